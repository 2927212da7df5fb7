"""The agent: tools, contacts, prompt and conversation history."""
