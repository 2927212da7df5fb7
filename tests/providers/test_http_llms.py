"""OpenAI-compatible, Groq and Anthropic providers through their real SDKs over loopback SSE."""

from __future__ import annotations

import json

import pytest

from esl_agent.config import HttpLlmSettings
from esl_agent.errors import ProviderError, ProviderTimeout
from esl_agent.providers.anthropic_llm import AnthropicLanguageModel
from esl_agent.providers.base import Message, NoTurn, TextDelta, ToolCall, ToolSpec, Usage
from esl_agent.providers.groq_llm import GroqLanguageModel
from esl_agent.providers.openai_llm import OpenAiLanguageModel
from esl_agent.sim.anthropic_sse import AnthropicSseServer
from esl_agent.sim.openai_sse import Faults, OpenAiSseServer, ScriptedReply

from .helpers import Turn

pytestmark = pytest.mark.wire

OPTIONS = HttpLlmSettings(model="test-model", max_tokens=50, temperature=0.2)
TOOLS = [ToolSpec("transfer_call", "Transfer the caller", {
    "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})]
REPLY = ScriptedReply(
    text="Sure, I will connect you to Anna Berger now.",
    tool_calls=[("transfer_call", {"name": "Anna Berger", "note": "caller asked politely"}),
                ("lookup_contact", {"name": "Markus Huber", "fields": ["phone", "room"]})],
)


def make(kind: str, server):
    if kind == "openai":
        return OpenAiLanguageModel(OPTIONS, base_url=server.url + "/v1")
    if kind == "groq":
        return GroqLanguageModel(OPTIONS, base_url=server.url, api_key="gsk-test")
    return AnthropicLanguageModel(OPTIONS, base_url=server.url, api_key="sk-ant-test")


@pytest.fixture(params=["openai", "groq", "anthropic"])
def setup(request):
    kind = request.param
    server_cls = AnthropicSseServer if kind == "anthropic" else OpenAiSseServer
    with server_cls([REPLY]) as server:
        yield kind, server, make(kind, server)


def test_text_and_fragmented_tool_calls_are_reassembled(setup):
    kind, server, llm = setup
    events = list(llm.stream([Message("system", "Be brief."), Message("user", "Anna please")],
                             TOOLS, NoTurn()))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert text == REPLY.text
    assert len([e for e in events if isinstance(e, TextDelta)]) > 3  # really streamed
    assert [(c.name, c.arguments) for c in calls] == REPLY.tool_calls
    assert all(c.id for c in calls)
    assert events[-1] == Usage(12, 7, kind)
    # the server really got fragments: every tool call's JSON was split into several chunks
    assert server.requests[0].chunks_sent > 10
    body = server.requests[0].body
    assert body["model"] == "test-model" and body["stream"] is True
    if kind == "anthropic":
        assert body["system"] == "Be brief."
        assert body["tools"][0]["input_schema"]["required"] == ["name"]
    else:
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["tools"][0]["function"]["name"] == "transfer_call"
    expected_path = {"openai": "/v1/chat/completions", "groq": "/openai/v1/chat/completions",
                     "anthropic": "/v1/messages"}[kind]
    assert server.requests[0].path == expected_path


def test_tool_results_are_sent_in_vendor_format(setup):
    kind, server, llm = setup
    call = ToolCall("call_1", "transfer_call", {"name": "Anna"})
    history = [Message("user", "Anna please"), Message("assistant", "", (call,)),
               Message("tool", '{"ok": true}', tool_call_id="call_1")]
    list(llm.stream(history, TOOLS, NoTurn()))
    sent = server.requests[0].body["messages"]
    if kind == "anthropic":
        assert sent[1] == {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "transfer_call", "input": {"name": "Anna"}}]}
        assert sent[2] == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": '{"ok": true}'}]}
    else:
        assert sent[1]["tool_calls"][0]["function"] == {
            "name": "transfer_call", "arguments": json.dumps({"name": "Anna"})}
        assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true}'}


@pytest.mark.parametrize("status", [429, 500])
def test_http_errors_become_provider_errors(setup, status):
    _kind, server, llm = setup
    server.faults = Faults(status=status)
    with pytest.raises(ProviderError, match=str(status)):
        list(llm.stream([Message("user", "hi")], [], NoTurn()))
    assert len(server.requests) == 1  # max_retries=0: failover is ours, the SDK must not retry


@pytest.mark.parametrize("fault", [Faults(error_after=3), Faults(malformed_after=3),
                                   Faults(disconnect_after=3)],
                         ids=["error-event", "malformed", "disconnect"])
def test_broken_streams_become_provider_errors(setup, fault):
    _kind, server, llm = setup
    server.faults = fault
    with pytest.raises(ProviderError):
        list(llm.stream([Message("user", "hi")], [], NoTurn()))


def test_cancellation_closes_the_http_stream(setup):
    _kind, server, llm = setup
    server.faults = Faults(chunk_delay=0.05)
    turn = Turn()
    got = []
    for event in llm.stream([Message("user", "hi")], TOOLS, turn):
        got.append(event)
        if len(got) == 2:
            turn.cancelled = True
    assert len(got) == 2
    record = server.requests[0]
    assert record.done.wait(5)
    assert record.client_closed_early and not record.completed


def test_a_stalled_stream_times_out_as_provider_timeout(setup):
    kind, server, _llm = setup
    server.faults = Faults(stall_after=2)
    cls = {"openai": OpenAiLanguageModel, "groq": GroqLanguageModel,
           "anthropic": AnthropicLanguageModel}[kind]
    base = server.url + "/v1" if kind == "openai" else server.url
    llm = cls(OPTIONS, base_url=base, api_key="k", timeout=0.3)
    with pytest.raises(ProviderTimeout):
        list(llm.stream([Message("user", "hi")], [], NoTurn()))
    assert server.requests[0].done.wait(5) and server.requests[0].client_closed_early
