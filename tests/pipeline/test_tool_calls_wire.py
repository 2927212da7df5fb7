"""Tool calls from a real OpenAI-compatible stream: several in one turn, an unknown tool, bad JSON.

The real OpenAI client talks to the loopback SSE server, which splits tool-call arguments across
chunks; the real AgentTools run against the example contacts, the shipped dial policy and a real
audit log. Only the call, the recogniser and the voice are in-process fakes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from esl_agent.agent.contacts import YamlContactStore
from esl_agent.agent.tools import AgentTools
from esl_agent.config import AgentSettings, HttpLlmSettings, PipelineSettings
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.speech_out import PreparedAudio
from esl_agent.policy.audit import AuditLog
from esl_agent.policy.dialing import DialPolicy
from esl_agent.providers.openai_llm import OpenAiLanguageModel
from esl_agent.sim.openai_sse import OpenAiSseServer, ScriptedReply
from tests.pipeline.fakes import FakeCall, FakeGreetings, FakeStt, FakeTts, wait_until

pytestmark = pytest.mark.wire

ROOT = Path(__file__).resolve().parents[2]
APOLOGY = "Sorry, something went wrong on our side."


def conversation(server: OpenAiSseServer, tmp_path: Path):
    call, stt, tts = FakeCall(), FakeStt(), FakeTts()
    tools = AgentTools(call, YamlContactStore(ROOT / "conf" / "contacts.example.yaml"),
                       DialPolicy.from_file(ROOT / "conf" / "policy.yaml"), AuditLog(tmp_path / "audit.log"),
                       AgentSettings(), messages_path=str(tmp_path / "messages.jsonl"))
    llm = OpenAiLanguageModel(HttpLlmSettings(model="fake"), base_url=server.url + "/v1")
    settings = PipelineSettings(end_of_turn_ms=1, end_of_turn_digits_ms=1, filler_after_ms=60_000)
    conv = Conversation(call, stt, llm, tts, tools, FakeGreetings(Path("/g.wav")),
                        lambda contact: "You are a receptionist.", settings, 8000, prepared=PreparedAudio(),
                        apology_text=APOLOGY)
    return conv, call, stt, tts


def test_two_tools_in_one_turn_and_an_unknown_tool(tmp_path: Path) -> None:
    server = OpenAiSseServer([
        ScriptedReply(tool_calls=[("lookup_contact", {"name": "Anna"}), ("order_pizza", {"size": "large"})]),
        ScriptedReply(text="Anna Berger is our head of accounting. I cannot order pizza."),
    ])
    with server:
        conv, call, stt, tts = conversation(server, tmp_path)
        try:
            conv.start()
            stt.say("who is anna and can you order a pizza")
            wait_until(lambda: any("head of accounting" in t for t in tts.texts()), timeout=10,
                       what="the answer after both tool results")
            second = server.wait_requests(2)[1].body["messages"]
            results = [m for m in second if m["role"] == "tool"]
            assert len(results) == 2, second
            assert "Anna Berger" in results[0]["content"]
            assert "order_pizza" in results[1]["content"] or "unknown" in results[1]["content"].lower()
            calls = [m for m in second if m["role"] == "assistant" and m.get("tool_calls")]
            assert [c["function"]["name"] for c in calls[0]["tool_calls"]] == ["lookup_contact", "order_pizza"]
            assert call.transfers == []
        finally:
            conv.close()


def test_malformed_tool_arguments_end_in_a_spoken_apology(tmp_path: Path) -> None:
    server = OpenAiSseServer([
        ScriptedReply(tool_calls=[("transfer_call", '{"name": "Anna Ber')]),  # cut-off JSON
        ScriptedReply(text="How can I help?"),
    ])
    with server:
        conv, call, stt, tts = conversation(server, tmp_path)
        try:
            conv.start()
            stt.say("put me through to anna")
            wait_until(lambda: APOLOGY in tts.texts(), timeout=10, what="the apology")
            assert call.transfers == []
            # play out whatever has been sent so far, until the agent listens again
            wait_until(lambda: (call.play_all(), call.states[-1][0] == "listening")[1], timeout=10,
                       what="listening again")
            stt.say("hello again")
            wait_until(lambda: "How can I help?" in tts.texts(), timeout=10, what="the call goes on")
        finally:
            conv.close()
