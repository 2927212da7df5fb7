"""Anthropic Messages API with native tool use, streamed (raw SSE events) via the anthropic SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import anthropic

from esl_agent.config import HttpLlmSettings
from esl_agent.errors import ProviderError
from esl_agent.providers.base import (
    LlmEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolSpec,
    TurnToken,
    Usage,
)
from esl_agent.providers.openai_chat import map_errors


def to_anthropic(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Neutral messages -> (system prompt, Anthropic messages).

    Assistant tool calls become `tool_use` blocks; tool results become `tool_result` blocks in
    a user message (consecutive results share one message, as the API expects).
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list) and all(
                b.get("type") == "tool_result" for b in out[-1]["content"]
            ):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        if m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = []
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                       for c in m.tool_calls]
            out.append({"role": "assistant", "content": blocks})
            continue
        out.append({"role": m.role, "content": m.content})
    return "\n\n".join(s for s in system if s), out


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in tools]

DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicLanguageModel:
    """Streams replies from the Messages API (`base_url` empty = api.anthropic.com)."""

    def __init__(
        self,
        options: HttpLlmSettings,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 20.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self.name = "anthropic"
        self.options = options
        self.client = anthropic.Anthropic(
            api_key=api_key or "missing-key",
            base_url=base_url or DEFAULT_BASE_URL,  # never the SDK's env lookup
            max_retries=0,
            timeout=anthropic.Timeout(timeout, connect=connect_timeout),
        )

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], turn: TurnToken
    ) -> Iterator[LlmEvent]:
        """Stream one reply: TextDelta..., ToolCall..., then Usage."""
        system, converted = to_anthropic(messages)
        request: dict[str, Any] = {
            "model": self.options.model,
            "max_tokens": self.options.max_tokens,
            "messages": converted,  # anthropic 2.x has no `temperature` parameter any more
            "stream": True,
        }
        if system:
            request["system"] = system
        if tools:
            request["tools"] = to_anthropic_tools(tools)
        return self._run(request, turn)

    def _run(self, request: dict[str, Any], turn: TurnToken) -> Iterator[LlmEvent]:
        with map_errors(anthropic, self.name):
            stream = self.client.messages.create(**request)
        try:
            with map_errors(anthropic, self.name):
                yield from self._decode(stream, turn)
        finally:
            stream.close()

    def _decode(self, stream: Any, turn: TurnToken) -> Iterator[LlmEvent]:
        tools: dict[int, tuple[str, str, list[str]]] = {}  # index -> (id, name, json parts)
        input_tokens = output_tokens = 0
        for event in stream:
            if turn.cancelled:
                return
            kind = event.type
            if kind == "message_start":
                input_tokens = event.message.usage.input_tokens or 0
            elif kind == "content_block_start":
                block = event.content_block
                if block.type == "tool_use":
                    tools[event.index] = (block.id, block.name, [])
            elif kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta" and delta.text:
                    yield TextDelta(delta.text)
                elif delta.type == "input_json_delta" and event.index in tools:
                    tools[event.index][2].append(delta.partial_json)
            elif kind == "content_block_stop" and event.index in tools:
                yield self._tool_call(*tools.pop(event.index))
            elif kind == "message_delta" and event.usage is not None:
                output_tokens = event.usage.output_tokens or 0
        if turn.cancelled:
            return
        yield Usage(input_tokens, output_tokens, self.name)

    def _tool_call(self, call_id: str, name: str, parts: list[str]) -> ToolCall:
        raw = "".join(parts).strip()
        try:
            args = json.loads(raw) if raw else {}
        except ValueError:
            raise ProviderError(f"{self.name}: tool call {name!r} has invalid JSON input") from None
        if not isinstance(args, dict):
            raise ProviderError(f"{self.name}: tool call {name!r} input is not an object")
        return ToolCall(id=call_id, name=name, arguments=args)
