"""Failover across providers: in-memory fakes for the rules, loopback servers for the wire."""

from __future__ import annotations

import time

import gevent
import pytest

from esl_agent.config import HttpLlmSettings
from esl_agent.errors import ProviderError
from esl_agent.providers.anthropic_llm import AnthropicLanguageModel
from esl_agent.providers.base import Message, NoTurn, TextDelta, ToolCall, Usage
from esl_agent.providers.failover import FailoverLanguageModel
from esl_agent.providers.openai_llm import OpenAiLanguageModel
from esl_agent.providers.scripted_llm import ScriptedLanguageModel
from esl_agent.sim.anthropic_sse import AnthropicSseServer
from esl_agent.sim.openai_sse import Faults, OpenAiSseServer, ScriptedReply

HELLO = [Message("user", "hello")]


class FakeLlm:
    """A provider that raises, stalls or answers, and remembers whether it was closed."""

    def __init__(self, name, *, fail_before=None, stall=False, fail_after=None, words=("a", "b")):
        self.name = name
        self.fail_before = fail_before
        self.stall = stall
        self.fail_after = fail_after
        self.words = words
        self.closed = False

    def stream(self, messages, tools, turn):
        try:
            if self.fail_before:
                raise self.fail_before
            if self.stall:
                gevent.sleep(60)
            for w in self.words:
                yield TextDelta(w)
            if self.fail_after:
                raise self.fail_after
            yield Usage(1, 1)
        finally:
            self.closed = True


def test_error_before_first_token_moves_on():
    bad = FakeLlm("bad", fail_before=ProviderError("bad: HTTP error 500"))
    good = FakeLlm("good")
    llm = FailoverLanguageModel([bad, good], first_token_timeout=1.0)
    events = list(llm.stream(HELLO, [], NoTurn()))
    assert events == [TextDelta("a"), TextDelta("b"), Usage(1, 1, "good")]
    assert llm.last_provider == "good"


def test_stall_times_out_and_closes_the_stalled_stream():
    slow = FakeLlm("slow", stall=True)
    good = FakeLlm("good")
    llm = FailoverLanguageModel([slow, good], first_token_timeout=0.05)
    usage = next(e for e in llm.stream(HELLO, [], NoTurn()) if isinstance(e, Usage))
    assert usage.provider == "good"
    assert slow.closed


def test_error_after_output_ends_the_reply():
    flaky = FakeLlm("flaky", fail_after=RuntimeError("socket reset"))
    spare = FakeLlm("spare")
    llm = FailoverLanguageModel([flaky, spare], first_token_timeout=1.0)
    got = []
    with pytest.raises(ProviderError, match="flaky"):
        for event in llm.stream(HELLO, [], NoTurn()):
            got.append(event)
    assert got == [TextDelta("a"), TextDelta("b")]
    assert not spare.closed  # never started


def test_all_failing_raises_with_every_reason():
    llm = FailoverLanguageModel([FakeLlm("x", fail_before=ProviderError("x: 429")),
                                 FakeLlm("y", stall=True)], first_token_timeout=0.05)
    with pytest.raises(ProviderError, match=r"x: 429.*y: no first token"):
        list(llm.stream(HELLO, [], NoTurn()))


@pytest.mark.wire
def test_slow_first_token_fails_over_and_closes_the_first_stream_at_the_server():
    settings = HttpLlmSettings(model="m")
    with OpenAiSseServer([ScriptedReply(text="too late")]) as slow, \
            AnthropicSseServer([ScriptedReply(text="Anthropic here.")]) as fast:
        slow.faults = Faults(first_chunk_delay=30)
        llm = FailoverLanguageModel([
            OpenAiLanguageModel(settings, base_url=slow.url + "/v1"),
            AnthropicLanguageModel(settings, base_url=fast.url, api_key="k"),
        ], first_token_timeout=0.4)
        started = time.monotonic()
        events = list(llm.stream(HELLO, [], NoTurn()))
        elapsed = time.monotonic() - started
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Anthropic here."
        assert events[-1].provider == "anthropic" and llm.last_provider == "anthropic"
        assert elapsed < 30  # did not wait for the stalled provider
        record = slow.requests[0]
        assert record.done.wait(5), "the stalled server never saw the client go away"
        assert record.client_closed_early and record.chunks_sent == 0


@pytest.mark.wire
def test_rate_limited_provider_fails_over_to_scripted():
    with OpenAiSseServer() as limited:
        limited.faults = Faults(status=429)
        llm = FailoverLanguageModel([
            OpenAiLanguageModel(HttpLlmSettings(model="m"), base_url=limited.url + "/v1"),
            ScriptedLanguageModel(),
        ], first_token_timeout=2.0)
        events = list(llm.stream([Message("user", "goodbye")], [], NoTurn()))
        assert events[-1].provider == "scripted"
        assert not [e for e in events if isinstance(e, ToolCall)]  # hang_up not offered
        assert len(limited.requests) == 1


@pytest.mark.wire
def test_mid_stream_error_is_not_failed_over():
    with OpenAiSseServer([ScriptedReply(text="one two three four five")]) as broken, \
            AnthropicSseServer() as spare:
        broken.faults = Faults(error_after=3)
        llm = FailoverLanguageModel([
            OpenAiLanguageModel(HttpLlmSettings(model="m"), base_url=broken.url + "/v1"),
            AnthropicLanguageModel(HttpLlmSettings(model="m"), base_url=spare.url, api_key="k"),
        ], first_token_timeout=2.0)
        with pytest.raises(ProviderError):
            list(llm.stream(HELLO, [], NoTurn()))
        assert spare.requests == []
