"""The LLM's tools as a conversation uses them: specs once, calls that never raise, outcomes
recorded on the reply (tool actions such as a transfer wait until the reply was heard)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gevent.pool

from esl_agent.logs import CallLogger
from esl_agent.pipeline.speech_out import Reply
from esl_agent.providers.base import ToolCall, ToolSpec


class ToolOutcome(Protocol):
    """What `tools.execute` returns (esl_agent.agent.tools.ToolResult)."""

    content: str
    ends_call: bool
    after_speech: Callable[[], Any] | None


class Tools(Protocol):
    """The LLM's tools (esl_agent.agent.tools.AgentTools).

    Optional: `speech_cancelled()` is called when a barge-in dropped a pending after-speech
    action (the tools may then allow a new transfer or hang-up).
    """

    def specs(self) -> list[ToolSpec]: ...

    def execute(self, tool_call: ToolCall) -> ToolOutcome: ...


@dataclass
class FailedTool:
    """The outcome of a tool that raised: the model is told, the call goes on."""

    content: str
    ends_call: bool = False
    after_speech: Callable[[], Any] | None = None


class ToolRunner:
    """Runs one call's tools for its conversation.

    Args:
        tools: the LLM's tools.
        group: the call's greenlet group (a started tool finishes even if the caller barges in).
        log: the call's logger.
    """

    def __init__(self, tools: Tools, group: gevent.pool.Group, log: CallLogger) -> None:
        self.tools = tools
        self._group = group
        self.log = log
        self._specs: list[ToolSpec] | None = None

    def specs(self) -> list[ToolSpec]:
        """The tool specs for the LLM (asked once per call)."""
        if self._specs is None:
            self._specs = list(self.tools.specs())
        return self._specs

    def execute(self, tool_call: ToolCall) -> ToolOutcome:
        """Run one tool call; a failure becomes an outcome the model can talk about."""
        try:
            return self.tools.execute(tool_call)
        except Exception:  # a tool failure is spoken about, never fatal
            self.log.exception("tool raised", extra={"tool": tool_call.name})
            return FailedTool(f"The {tool_call.name} tool failed. Apologise briefly and offer another way to help.")

    def run_round(self, reply: Reply, calls: Sequence[ToolCall]) -> None:
        """Run a round's tool calls; record calls and results and keep their after-speech actions."""
        assert reply.record is not None
        reply.record.add_tool_calls(calls)
        for tool_call in calls:
            self.log.info("tool call", extra={"tool": tool_call.name, "turn": reply.turn.id})
            # In the call's group: a tool that started finishes even if the caller barges in.
            outcome = self._group.spawn(self.execute, tool_call).get()
            reply.record.add_tool_result(tool_call.id, outcome.content)
            if reply.turn.cancelled:
                return
            if outcome.after_speech is not None:
                reply.after_speech.append(outcome.after_speech)
            reply.ends_call = reply.ends_call or bool(outcome.ends_call)

    def adopt(self, reply: Reply, tool_call: ToolCall, outcome: ToolOutcome) -> None:
        """Record a tool that ran before the reply began (the DTMF transfer) as part of it."""
        assert reply.record is not None
        reply.record.add_tool_calls([tool_call])
        reply.record.add_tool_result(tool_call.id, outcome.content)
        if outcome.after_speech is not None:
            reply.after_speech.append(outcome.after_speech)
        reply.ends_call = bool(outcome.ends_call)

    def speech_cancelled(self) -> None:
        """A barge-in cancelled a transfer/hang-up before it ran: let the tools allow a new one."""
        self.log.info("pending call-ending action cancelled by the caller")
        hook = getattr(self.tools, "speech_cancelled", None)
        if hook is not None:
            try:
                hook()
            except Exception:
                self.log.exception("tools.speech_cancelled failed")
