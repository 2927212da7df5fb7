"""Conversation history: only what the caller heard of a reply, tool rounds kept, bounded."""

from __future__ import annotations

from esl_agent.agent.history import (
    CUT_MARK,
    ConversationHistory,
    SpokenSentence,
    heard_part,
    locate,
)
from esl_agent.providers.base import Message, ToolCall


def spoken(history: ConversationHistory, *pieces: tuple[str, float]):
    record = history.begin_reply()
    for text, ms in pieces:
        record.say(text).duration_ms = ms
    return record


def test_complete_reply_is_kept_in_full() -> None:
    h = ConversationHistory("sys")
    h.add_user("hi")
    spoken(h, ("Hello there.", 1000), ("How can I help?", 1000))
    assert h.messages() == [
        Message("system", "sys"),
        Message("user", "hi"),
        Message("assistant", "Hello there. How can I help?"),
    ]


def test_interrupted_reply_keeps_only_the_heard_sentences_and_words() -> None:
    h = ConversationHistory("sys")
    h.add_user("when are you open")
    record = spoken(
        h,
        ("We are open from nine to five.", 2000),
        ("On Saturdays we open at ten and close at two.", 4000),
        ("Is there anything else?", 1500),
    )
    record.cut(2000 + 2400)  # 60 % into the second sentence
    said = h.messages()[-1]
    assert said.role == "assistant"
    assert said.content == "We are open from nine to five. On Saturdays we open at ten" + CUT_MARK
    assert "close" not in said.content and "anything" not in said.content


def test_cut_inside_the_first_sentence_and_before_any_audio() -> None:
    h = ConversationHistory("sys")
    h.add_user("x")
    record = spoken(h, ("one two three four", 1000))
    record.cut(500)
    assert h.messages()[-1].content == "one two" + CUT_MARK
    h2 = ConversationHistory("sys")
    h2.add_user("x")
    spoken(h2, ("never heard", 1000)).cut(0)
    assert [m.role for m in h2.messages()] == ["system", "user"]


def test_filler_takes_time_but_is_not_shown() -> None:
    h = ConversationHistory("sys")
    h.add_user("x")
    record = h.begin_reply()
    record.say("One moment, please.", in_history=False).duration_ms = 1000
    record.say("Your order shipped.").duration_ms = 1000
    record.say("It arrives Monday.").duration_ms = 1000
    record.cut(2100)
    assert h.messages()[-1].content == "Your order shipped." + CUT_MARK
    assert "moment" not in record.text()


def test_unsynthesised_sentence_counts_as_unheard() -> None:
    h = ConversationHistory("sys")
    h.add_user("x")
    record = h.begin_reply()
    record.say("First.").duration_ms = 500
    record.say("Second, still synthesising.")
    record.cut(10_000)
    assert record.text() == "First." + CUT_MARK


def test_tool_calls_and_results_stay_and_confirmation_is_cut() -> None:
    h = ConversationHistory("sys")
    h.add_user("put me through to Anna")
    record = h.begin_reply()
    record.say("Let me check.").duration_ms = 800
    call = ToolCall("c1", "transfer_call", {"name": "Anna"})
    record.add_tool_calls([call])
    record.add_tool_result("c1", "ok: transferring to Anna")
    record.say("Connecting you to Anna now.").duration_ms = 1200
    record.cut(800 + 800)
    assert h.messages()[1:] == [
        Message("user", "put me through to Anna"),
        Message("assistant", "Let me check.", tool_calls=(call,)),
        Message("tool", "ok: transferring to Anna", tool_call_id="c1"),
        Message("assistant", "Connecting you to" + CUT_MARK),
    ]


def test_unanswered_tool_call_is_not_sent() -> None:
    h = ConversationHistory("sys")
    h.add_user("x")
    record = h.begin_reply()
    record.say("Checking.").duration_ms = 100
    record.add_tool_calls([ToolCall("c1", "lookup_contact", {})])
    assert h.messages()[-1] == Message("assistant", "Checking.")


def test_consecutive_user_turns_merge_and_length_is_bounded() -> None:
    h = ConversationHistory("sys", max_messages=5)
    h.add_user("first")
    spoken(h, ("never heard", 100)).cut(0)
    h.add_user("second")
    assert h.messages()[1:] == [Message("user", "first second")]
    for i in range(10):
        h.add_user(f"q{i}")
        spoken(h, (f"a{i}.", 100))
    msgs = h.messages()
    assert len(msgs) <= 5
    assert msgs[0].role == "system" and msgs[1].role == "user"
    assert msgs[-1].content == "a9."


def test_locate_and_heard_part() -> None:
    sentences = [SpokenSentence("a b", 100), SpokenSentence("c d", 200)]
    assert locate(sentences, 0) == (0, 0)
    assert locate(sentences, 150) == (1, 50)
    assert locate(sentences, 300) is None
    assert heard_part(SpokenSentence("alpha beta", 1000), 1000) == "alpha beta"
    assert heard_part(SpokenSentence("alpha beta", 1000), 600) == "alpha"
    assert heard_part(SpokenSentence("alpha beta", 1000), 0) == ""


def test_unsaid_sentence_is_forgotten() -> None:
    h = ConversationHistory("sys")
    h.add_user("x")
    record = h.begin_reply()
    record.say("Spoken.").duration_ms = 300
    dropped = record.say("Never synthesised.")
    record.unsay(dropped)
    assert record.text() == "Spoken."
    assert [s.text for s in record.sentences] == ["Spoken."]
