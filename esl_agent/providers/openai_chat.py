"""Shared by the OpenAI-compatible and Groq providers: message/tool translation, chunk stream
decoding (text deltas, tool calls accumulated by index) and SDK error mapping.

Both SDKs (openai, groq) return the same `ChatCompletionChunk` shape and the same family of
exceptions (APIStatusError, APITimeoutError, APIConnectionError), so one decoder serves both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from esl_agent.errors import ProviderError, ProviderTimeout
from esl_agent.providers.base import (
    LlmEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolSpec,
    TurnToken,
    Usage,
)


def to_chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Provider-neutral messages -> OpenAI chat messages (tool results as role `tool`)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.role == "assistant" and m.tool_calls:
            out.append({
                "role": "assistant",
                "content": m.content or None,
                "tool_calls": [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                    for c in m.tool_calls
                ],
            })
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def to_chat_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs -> OpenAI `tools=[{"type": "function", "function": {...}}]`."""
    return [
        {"type": "function",
         "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def finish(self, provider: str) -> ToolCall:
        raw = "".join(self.arguments).strip()
        try:
            args = json.loads(raw) if raw else {}
        except ValueError:
            raise ProviderError(f"{provider}: tool call {self.name!r} has invalid JSON arguments") from None
        if not isinstance(args, dict):
            raise ProviderError(f"{provider}: tool call {self.name!r} arguments are not an object")
        return ToolCall(id=self.id, name=self.name, arguments=args)


def decode_chunks(stream: Any, turn: TurnToken, provider: str) -> Iterator[LlmEvent]:
    """Turn an SDK chunk stream into TextDelta / ToolCall / Usage events.

    Tool calls are accumulated by `index` across fragmented argument deltas and yielded when the
    choice finishes (or the stream ends). Stops and returns once `turn.cancelled`; the caller
    closes the stream (that is what stops generation server-side).
    """
    calls: dict[int, _PendingCall] = {}
    usage: Usage | None = None
    flushed = False
    for chunk in stream:
        if turn.cancelled:
            return
        if getattr(chunk, "usage", None) is not None:
            usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0, provider)
        x_groq = getattr(chunk, "x_groq", None)
        if x_groq is not None and getattr(x_groq, "usage", None) is not None:
            usage = Usage(x_groq.usage.prompt_tokens or 0, x_groq.usage.completion_tokens or 0, provider)
        for choice in chunk.choices or ():
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    yield TextDelta(delta.content)
                for tc in delta.tool_calls or ():
                    pending = calls.setdefault(tc.index, _PendingCall())
                    if tc.id:
                        pending.id = tc.id
                    if tc.function is not None:
                        if tc.function.name:
                            pending.name += tc.function.name
                        if tc.function.arguments:
                            pending.arguments.append(tc.function.arguments)
            if choice.finish_reason and not flushed:
                flushed = True
                yield from _flush(calls, provider)
    if turn.cancelled:
        return
    if not flushed:
        yield from _flush(calls, provider)
    yield usage or Usage(provider=provider)


def _flush(calls: dict[int, _PendingCall], provider: str) -> Iterator[ToolCall]:
    for index in sorted(calls):
        pending = calls[index]
        if not pending.name:
            raise ProviderError(f"{provider}: tool call #{index} arrived without a name")
        yield pending.finish(provider)
    calls.clear()


def chat_stream(
    create: Callable[..., Any],
    sdk: Any,
    provider: str,
    request: dict[str, Any],
    turn: TurnToken,
) -> Iterator[LlmEvent]:
    """Open a streamed chat completion with `create(**request)` and decode it.

    `sdk` is the imported openai or groq module (for its exception classes). The HTTP response
    is always closed on exit, whether the reply finished, was cancelled or the consumer stopped.
    """
    with map_errors(sdk, provider):
        stream = create(**request)
    try:
        with map_errors(sdk, provider):
            yield from decode_chunks(stream, turn, provider)
    finally:
        stream.close()


class map_errors:
    """Translate SDK / transport exceptions into ProviderError / ProviderTimeout."""

    def __init__(self, sdk: Any, provider: str) -> None:
        self.sdk = sdk
        self.provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, ProviderError):
            return False
        mapped = translate_error(self.sdk, self.provider, exc)
        if mapped is exc:
            return False
        raise mapped from exc


def translate_error(sdk: Any, provider: str, exc: BaseException) -> BaseException:
    """Map one SDK exception to our error tree; unknown non-SDK exceptions pass through."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeout(f"{provider}: request timed out")
    if isinstance(exc, sdk.APIStatusError):
        if exc.status_code < 400:  # an error event inside a 200 stream
            return ProviderError(f"{provider}: error event mid-stream")
        kind = "rate limited" if exc.status_code == 429 else "HTTP error"
        return ProviderError(f"{provider}: {kind} {exc.status_code}")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(f"{provider}: connection failed: {type(exc.__cause__ or exc).__name__}")
    if isinstance(exc, sdk.APIError):
        return ProviderError(f"{provider}: stream error: {getattr(exc, 'message', exc)}")
    if isinstance(exc, ValueError):  # malformed JSON chunk
        return ProviderError(f"{provider}: malformed stream chunk")
    for transport in _transport_modules():  # errors raised while iterating the raw body
        if isinstance(exc, transport.TimeoutException):
            return ProviderTimeout(f"{provider}: request timed out")
        if isinstance(exc, transport.HTTPError):
            return ProviderError(f"{provider}: transport error: {type(exc).__name__}")
    return exc


def _transport_modules() -> list[Any]:
    """httpx (openai, groq) and httpx2 (anthropic 2.x), whichever are installed."""
    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(__import__(name))
        except ImportError:
            continue
    return found


def chat_request(options: Any, messages: Sequence[Message], tools: Sequence[ToolSpec], **extra: Any) -> dict:
    """The streaming chat-completions request both OpenAI and Groq take (`extra` adds vendor keys)."""
    request: dict[str, Any] = {
        "model": options.model,
        "messages": to_chat_messages(messages),
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        "stream": True,
        **extra,
    }
    if tools:
        request["tools"] = to_chat_tools(tools)
    return request
