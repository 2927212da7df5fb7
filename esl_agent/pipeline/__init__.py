"""The voice pipeline inside a call: turns, barge-in, sentences, greetings, the conversation."""
