"""The scripted policy: intents, slots, tool calls and confirmations after tool results."""

from __future__ import annotations

import pytest

from esl_agent.errors import ConfigError
from esl_agent.providers.base import Message, NoTurn, TextDelta, ToolCall, ToolSpec, Usage
from esl_agent.providers.scripted_llm import ScriptedLanguageModel, parse_script

from .helpers import Turn

TOOLS = [ToolSpec(n, n, {"type": "object"}) for n in ("transfer_call", "lookup_contact", "hang_up")]


def reply(*turns, tools=TOOLS):
    llm = ScriptedLanguageModel()
    events = list(llm.stream([Message(role, text) for role, text in turns], tools, NoTurn()))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, [(c.name, c.arguments) for c in events if isinstance(c, ToolCall)]


def test_greets_and_asks_for_the_name():
    text, calls = reply()
    assert "name" in text and calls == []
    text, _ = reply(("user", "Hello"))
    assert "May I have your name" in text


def test_remembers_the_name_the_caller_gave():
    text, _ = reply(("assistant", "May I have your name, please?"), ("user", "Anna Berger."),)
    assert "Anna Berger" in text
    text, _ = reply(("user", "Hi, my name is markus"), ("assistant", "Hi"), ("user", "hello"))
    assert text.startswith("Hello Markus")
    text, _ = reply(("system", "Caller name: Eva Novak"), ("user", "good morning"))
    assert text.startswith("Hello Eva Novak")


@pytest.mark.parametrize("utterance, name", [
    ("Could you connect me to Anna Berger please?", "Anna Berger"),
    ("transfer me to markus", "Markus"),
    ("I'd like to speak to the sales team.", "The Sales Team"),
])
def test_transfer_requests_call_transfer_call(utterance, name):
    text, calls = reply(("user", utterance))
    assert calls == [("transfer_call", {"name": name})]
    assert name in text


def test_lookup_and_hours_and_fallback():
    _, calls = reply(("user", "Who is John Smith?"))
    assert calls == [("lookup_contact", {"name": "John Smith"})]
    text, calls = reply(("user", "What are your opening hours?"))
    assert "Monday to Friday" in text and calls == []
    text, calls = reply(("user", "The weather is lovely"))
    assert "sorry" in text.lower() and calls == []


@pytest.mark.parametrize("bye", ["Bye!", "goodbye", "no, that's all, thanks"])
def test_goodbye_speaks_then_hangs_up(bye):
    text, calls = reply(("user", bye))
    assert "Goodbye" in text and calls == [("hang_up", {})]


def test_tools_not_offered_are_not_called():
    text, calls = reply(("user", "connect me to Anna"), tools=[])
    assert calls == [] and "Anna" in text


def test_confirmation_after_a_tool_result():
    call = ToolCall("c1", "lookup_contact", {"name": "Anna"})
    llm = ScriptedLanguageModel()
    text, calls = llm.decide([Message("user", "who is Anna"), Message("assistant", "", (call,)),
                              Message("tool", '{"summary": "Anna Berger is in sales."}',
                                      tool_call_id="c1")], TOOLS)
    assert (text, calls) == ("Anna Berger is in sales.", [])
    call = ToolCall("c2", "transfer_call", {"name": "Anna"})
    text, _ = llm.decide([Message("assistant", "", (call,)),
                          Message("tool", '{"ok": false, "error": "the line is busy"}',
                                  tool_call_id="c2")], TOOLS)
    assert text == "Sorry, that did not work: the line is busy."


def test_streams_word_by_word_and_stops_when_cancelled():
    llm = ScriptedLanguageModel()
    events = list(llm.stream([Message("user", "What are your opening hours?")], [], NoTurn()))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 5 and isinstance(events[-1], Usage)
    turn = Turn()
    got = []
    for e in llm.stream([Message("user", "What are your opening hours?")], [], turn):
        got.append(e)
        turn.cancelled = True
    assert len(got) == 1


def test_custom_script_and_errors():
    script = parse_script("""
intents:
  - name: pizza
    regex: 'order (?P<count>\\d+) pizzas?'
    reply: "{count} pizzas coming."
    tool: order
    arguments: {count: "{count}"}
""")
    llm = ScriptedLanguageModel(script)
    text, calls = llm.decide([Message("user", "please order 3 pizzas")],
                             [ToolSpec("order", "", {})])
    assert text == "3 pizzas coming." and calls[0].arguments == {"count": "3"}
    with pytest.raises(ConfigError, match="needs keywords or regex"):
        parse_script("intents: [{name: empty}]")
    with pytest.raises(ConfigError, match="regex"):
        parse_script("intents: [{name: bad, regex: '('}]")
