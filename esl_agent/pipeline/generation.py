"""The text of a reply: LLM rounds streamed into sentences, tools run between the rounds.

Each complete sentence goes to `enqueue` (the speaker) at once, so synthesis starts while the
model is still writing. A fixed text (greeting, DTMF confirmation) is split the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import gevent

from esl_agent.config import PipelineSettings
from esl_agent.errors import ProviderError, ProviderTimeout
from esl_agent.logs import CallLogger
from esl_agent.pipeline.records import CallUsage
from esl_agent.pipeline.sentences import SentenceSplitter
from esl_agent.pipeline.speech_out import END, Reply, close_quietly
from esl_agent.pipeline.tool_rounds import ToolRunner
from esl_agent.pipeline.turns import Clock
from esl_agent.providers.base import LanguageModel, Message, TextDelta, ToolCall, Usage


class ReplyWriter:
    """Writes the sentences of one call's replies.

    Args:
        llm: the language model (usually a failover chain).
        tools: the call's tool runner.
        messages: the history as the model sees it now.
        enqueue: `(reply, text, kind=...)` -> queue a sentence for speech.
        settings: sentence streaming and clause length.
        clock, usage, log: the call's time source, usage record and logger.
        apology_text: said instead when the model fails.
        max_tool_rounds: tool rounds allowed in one turn.
        llm_turn_timeout: one LLM round must be complete within this.
    """

    def __init__(
        self,
        llm: LanguageModel,
        tools: ToolRunner,
        messages: Callable[[], list[Message]],
        enqueue: Callable[..., None],
        settings: PipelineSettings,
        clock: Clock,
        usage: CallUsage,
        log: CallLogger,
        *,
        apology_text: str,
        max_tool_rounds: int,
        llm_turn_timeout: float,
    ) -> None:
        self.llm = llm
        self.tools = tools
        self.settings = settings
        self.clock = clock
        self.usage = usage
        self.log = log
        self.apology_text = apology_text
        self.max_tool_rounds = max_tool_rounds
        self.llm_turn_timeout = llm_turn_timeout
        self._messages = messages
        self._enqueue = enqueue

    def generate(self, reply: Reply, fixed: str | None) -> None:
        """Produce the reply's sentences: a fixed text, or LLM rounds with tools in between."""
        turn = reply.turn
        try:
            if fixed is not None:
                splitter = SentenceSplitter(self.settings.max_clause_chars)
                for sentence in splitter.push(fixed) + splitter.flush():
                    self._enqueue(reply, sentence)
            else:
                for round_no in itertools.count():
                    calls = self._llm_round(reply)
                    if not calls or turn.cancelled:
                        break
                    if round_no >= self.max_tool_rounds:
                        self.log.warning("too many tool rounds in one turn; stopping", extra={"turn": turn.id})
                        break
                    self.tools.run_round(reply, calls)
                    if turn.cancelled:
                        return
        except Exception as exc:  # ProviderError, or a broken provider: apologise
            if turn.cancelled:
                return
            if not isinstance(exc, ProviderError):
                self.log.exception("language model raised")
            self.log.warning("language model failed: %s", type(exc).__name__, extra={"turn": turn.id})
            reply.after_speech.clear()
            reply.ends_call = False
            self._enqueue(reply, self.apology_text, kind="apology")
        reply.queue.put(END)

    def _llm_round(self, reply: Reply) -> list[ToolCall]:
        """Stream one LLM answer; sentences go to TTS as soon as they are complete."""
        turn, timing = reply.turn, reply.timing
        streaming = self.settings.sentence_streaming
        splitter = SentenceSplitter(self.settings.max_clause_chars)
        whole: list[str] = []
        calls: list[ToolCall] = []
        events = self.llm.stream(self._messages(), self.tools.specs(), turn)
        deadline = gevent.Timeout(
            self.llm_turn_timeout, ProviderTimeout(f"no complete reply in {self.llm_turn_timeout:g} s")
        )
        deadline.start()
        try:
            for event in events:
                if turn.cancelled:
                    return []
                if isinstance(event, TextDelta):
                    if timing.llm_first_token is None:
                        timing.llm_first_token = self.clock.now()
                    if streaming:
                        for sentence in splitter.push(event.text):
                            self._enqueue(reply, sentence)
                    else:
                        whole.append(event.text)
                elif isinstance(event, ToolCall):
                    if timing.llm_first_token is None:
                        timing.llm_first_token = self.clock.now()
                    if streaming and not calls:
                        for sentence in splitter.flush():  # text before a tool call is complete
                            self._enqueue(reply, sentence)
                    calls.append(event)
                elif isinstance(event, Usage):
                    timing.tokens_in += event.input_tokens
                    timing.tokens_out += event.output_tokens
                    self.usage.tokens_in += event.input_tokens
                    self.usage.tokens_out += event.output_tokens
        finally:
            deadline.cancel()
            close_quietly(events)
        if turn.cancelled:
            return []
        rest = splitter.flush() if streaming else ["".join(whole).strip()]
        for sentence in rest:
            if sentence:
                self._enqueue(reply, sentence)
        return calls
