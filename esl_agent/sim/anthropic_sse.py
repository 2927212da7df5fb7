"""Loopback Anthropic Messages server streaming the real SSE event sequence.

`AnthropicSseServer` answers `POST /v1/messages` (stream=true) with message_start,
content_block_start (text / tool_use), ping, content_block_delta (text_delta / input_json_delta
split in fragments), content_block_stop, message_delta (stop_reason + usage) and message_stop.
Faults (shared `Faults` switches): delays, HTTP errors with Anthropic's error body, an `error`
event mid-stream, a stall, a malformed event or an abrupt disconnect. Requests are recorded.
Run `python -m esl_agent.sim.anthropic_sse --port 8002` to serve it standalone.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from esl_agent.sim.openai_sse import (
    Faults,
    RecordedRequest,
    ScriptedReply,
    SseHttpServer,
    _Exchange,
    serve_main,
    split_fragments,
    split_words,
)

__all__ = ["AnthropicSseServer", "Faults", "RecordedRequest", "ScriptedReply"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class AnthropicSseServer(SseHttpServer):
    """Fake `/v1/messages` answering from `replies` in order (the last one repeats)."""

    def __init__(self, replies: list[ScriptedReply] | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.replies = list(replies or [ScriptedReply(text="Hello! How can I help you today?")])
        self._served = 0
        self._ids = itertools.count(1)

    def next_reply(self) -> ScriptedReply:
        reply = self.replies[min(self._served, len(self.replies) - 1)]
        self._served += 1
        return reply

    def respond(self, ex: _Exchange, record: RecordedRequest) -> None:
        if record.method != "POST" or record.path != "/v1/messages":
            self.error_response(ex, 404, _error("not_found_error", "not found"))
            return
        if self.faults.status:
            status = self.faults.status
            self.error_response(ex, status, _error(_ERROR_TYPES.get(status, "api_error"),
                                                   f"loopback status {status}"))
            return
        reply = self.next_reply()
        events = self._events(reply, str(record.body.get("model", "fake")))
        error = _event("error", _error("overloaded_error", "Overloaded"))
        self.stream_events(ex, events, error, b"event: content_block_delta\ndata: {broken\n\n")

    def _events(self, reply: ScriptedReply, model: str) -> Iterator[bytes]:
        msg_id = f"msg_loopback{next(self._ids):04d}"
        yield _event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1}}})
        index = 0
        if reply.text:
            yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {"type": "text", "text": ""}})
            yield _event("ping", {"type": "ping"})
            for piece in split_words(reply.text):
                yield _event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": piece}})
            yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        for n, (name, args) in enumerate(reply.tool_calls):
            yield _event("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": f"toolu_{msg_id[-4:]}{n}",
                                  "name": name, "input": {}}})
            yield _event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": ""}})
            for frag in split_fragments(json.dumps(args)):
                yield _event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": frag}})
            yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        yield _event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                      "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens}})
        yield _event("message_stop", {"type": "message_stop"})


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def main(argv: list[str] | None = None) -> None:
    """Serve the Anthropic fake until interrupted."""
    serve_main(AnthropicSseServer, "anthropic", argv)


if __name__ == "__main__":
    main()
