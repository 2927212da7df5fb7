"""Loopback OpenAI-compatible chat server (also the Groq path) streaming real SSE chunks.

`OpenAiSseServer` answers `POST /v1/chat/completions` and `/openai/v1/chat/completions` with
`stream=true` in the exact OpenAI chunk shape: text deltas, tool-call deltas split across chunks
(first with id + name, later argument fragments), a final chunk with `finish_reason`, an optional
usage chunk and `data: [DONE]`. `Faults` switches inject delays, HTTP errors (429, 500), an error
mid-stream, a stall, a malformed chunk or an abrupt disconnect. Every request is recorded
(`RecordedRequest`) with timestamps and whether the client closed the stream early.

This module also holds `SseHttpServer`, the small chunked-HTTP server the Anthropic sim shares.
Run `python -m esl_agent.sim.openai_sse --port 8001` to serve it standalone.
"""

from __future__ import annotations

import abc
import argparse
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
from gevent.server import StreamServer

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class ScriptedReply:
    """What the fake model answers: text (streamed word by word) and/or tool calls."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)  # str = raw (bad) JSON
    input_tokens: int = 12
    output_tokens: int = 7


@dataclass
class Faults:
    """Misbehaviour switches. `*_after` counts content chunks already sent; -1 = off."""

    first_chunk_delay: float = 0.0  # seconds before the first chunk (after the headers)
    chunk_delay: float = 0.0  # seconds between chunks
    status: int = 0  # answer with this HTTP error status instead of a stream (e.g. 429, 500)
    error_after: int = -1  # send an in-stream error event after this many chunks
    stall_after: int = -1  # stop sending (keep the connection open) after this many chunks
    malformed_after: int = -1  # send a chunk that is not valid JSON after this many chunks
    disconnect_after: int = -1  # close the socket abruptly after this many chunks
    include_usage: bool = True  # openai: send the usage chunk when stream_options asks for it


@dataclass
class RecordedRequest:
    """One request as the server saw it, and how its response ended."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    first_chunk_at: float | None = None
    ended_at: float | None = None
    chunks_sent: int = 0
    completed: bool = False  # the whole response was written
    client_closed_early: bool = False  # the client closed before the response was complete
    done: gevent.event.Event = field(default_factory=gevent.event.Event, repr=False)


class ClientGone(Exception):
    """The client closed the connection while the server was still answering."""


class _Exchange:
    """The response side of one request: chunked writes, waits that notice a closing client."""

    def __init__(self, sock: Any, record: RecordedRequest) -> None:
        self.sock = sock
        self.record = record
        self.closed = gevent.event.Event()
        self._watch = gevent.spawn(self._watch_close)

    def _watch_close(self) -> None:
        try:
            while self.sock.recv(4096):
                pass
        except OSError:
            pass
        self.closed.set()

    def wait(self, seconds: float) -> None:
        """Sleep, but raise ClientGone at once if the client closes meanwhile."""
        if seconds > 0 and self.closed.wait(seconds):
            raise ClientGone
        if self.closed.is_set():
            raise ClientGone

    def start(self, status: int, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def chunk(self, data: bytes) -> None:
        if self.record.first_chunk_at is None:
            self.record.first_chunk_at = time.monotonic()
        self._send(b"%x\r\n%s\r\n" % (len(data), data))
        self.record.chunks_sent += 1

    def finish(self) -> None:
        self._send(b"0\r\n\r\n")

    def _send(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ClientGone
        try:
            self.sock.sendall(data)
        except OSError:
            raise ClientGone from None

    def stop(self) -> None:
        self._watch.kill(block=False)


class SseHttpServer(abc.ABC):
    """A tiny HTTP/1.1 server (one request per connection) on 127.0.0.1 for SSE fakes.

    Subclasses implement `respond(exchange, record)` writing the status, headers and chunks.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self._server = StreamServer((host, port), self._handle)
        self._arrived = gevent.event.Event()

    # -- lifecycle
    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SseHttpServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout=1)

    def __enter__(self) -> SseHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until `count` requests arrived (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"expected {count} requests, got {len(self.requests)}")
            self._arrived.clear()
            self._arrived.wait(min(left, 0.5))
        return self.requests

    # -- protocol
    @abc.abstractmethod
    def respond(self, ex: _Exchange, record: RecordedRequest) -> None:
        """Answer one recorded request in the vendor's format (each subclass is one vendor)."""

    def _handle(self, sock: Any, _addr: Any) -> None:
        record = self._read_request(sock)
        if record is None:
            sock.close()
            return
        self.requests.append(record)
        self._arrived.set()
        ex = _Exchange(sock, record)
        try:
            self.respond(ex, record)
            record.completed = True
        except ClientGone:
            record.client_closed_early = True
        finally:
            record.ended_at = time.monotonic()
            ex.stop()
            try:
                sock.close()
            except OSError:
                pass
            record.done.set()

    def _read_request(self, sock: Any) -> RecordedRequest | None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                return None
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            data = sock.recv(65536)
            if not data:
                return None
            rest += data
        try:
            body = json.loads(rest[:length] or b"{}")
        except ValueError:
            body = {"_raw": rest[:length].decode("latin-1")}
        return RecordedRequest(method, path.split("?")[0], headers, body, time.monotonic())

    def error_response(self, ex: _Exchange, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        ex.start(status, {"Content-Type": "application/json", "Content-Length": str(len(data)),
                          "Connection": "close", "retry-after": "1"})
        ex._send(data)

    def stream_events(self, ex: _Exchange, events: Iterator[bytes], error_event: bytes,
                      malformed: bytes) -> None:
        """Write SSE events applying the current faults (delays, error, stall, disconnect)."""
        f = self.faults
        ex.start(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                       "Transfer-Encoding": "chunked", "Connection": "close"})
        ex.wait(f.first_chunk_delay)
        for sent, event in enumerate(events):
            if sent == f.error_after:
                ex.chunk(error_event)
                ex.finish()
                return
            if sent == f.malformed_after:
                ex.chunk(malformed)
            if sent == f.stall_after:
                ex.closed.wait()
                raise ClientGone
            if sent == f.disconnect_after:
                ex.sock.shutdown(2)
                raise ClientGone
            if sent:
                ex.wait(f.chunk_delay)
            ex.chunk(event)
        ex.finish()


def split_words(text: str) -> list[str]:
    """Split text into streaming pieces that keep their leading space ("Hi", " there", ".")."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]


def split_fragments(text: str, size: int = 7) -> list[str]:
    """Cut a JSON argument string into small fragments as real models stream them."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class OpenAiSseServer(SseHttpServer):
    """Fake `/v1/chat/completions` (and Groq's `/openai/v1/...`) answering from `replies`."""

    PATHS = ("/v1/chat/completions", "/openai/v1/chat/completions")

    def __init__(self, replies: list[ScriptedReply] | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.replies = list(replies or [ScriptedReply(text="Hello! How can I help you today?")])
        self._served = 0
        self._ids = itertools.count(1)

    def next_reply(self) -> ScriptedReply:
        """Replies are served in order; the last one repeats."""
        reply = self.replies[min(self._served, len(self.replies) - 1)]
        self._served += 1
        return reply

    def respond(self, ex: _Exchange, record: RecordedRequest) -> None:
        if record.method != "POST" or record.path not in self.PATHS:
            self.error_response(ex, 404, {"error": {"message": "not found", "type": "invalid_request"}})
            return
        if self.faults.status:
            msg = "Rate limit reached" if self.faults.status == 429 else "upstream failure"
            self.error_response(ex, self.faults.status, {"error": {
                "message": msg, "type": "rate_limit_error" if self.faults.status == 429 else "server_error",
                "code": str(self.faults.status)}})
            return
        reply = self.next_reply()
        want_usage = bool((record.body.get("stream_options") or {}).get("include_usage"))
        groq = record.path.startswith("/openai/")
        events = self._chunks(reply, str(record.body.get("model", "fake")), want_usage, groq)
        error = _sse({"error": {"message": "internal error mid-stream", "type": "server_error"}})
        self.stream_events(ex, events, error, b"data: {\"id\": broken\n\n")

    def _chunks(self, reply: ScriptedReply, model: str, want_usage: bool,
                groq: bool) -> Iterator[bytes]:
        cid = f"chatcmpl-{next(self._ids)}"
        created = int(time.time())

        usage = {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                 "total_tokens": reply.input_tokens + reply.output_tokens}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {"id": cid, "object": "chat.completion.chunk", "created": created,
                       "model": model, "system_fingerprint": "fp_loopback",
                       "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}]}
            if groq and finish and self.faults.include_usage:  # Groq: usage rides on x_groq
                payload["x_groq"] = {"id": f"req_{cid}", "usage": usage}
            return _sse(payload)

        yield chunk({"role": "assistant", "content": ""})
        for piece in split_words(reply.text):
            yield chunk({"content": piece})
        for index, (name, args) in enumerate(reply.tool_calls):
            call_id = f"call_{cid[-4:]}_{index}"
            yield chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                         "function": {"name": name, "arguments": ""}}]})
            for frag in split_fragments(args if isinstance(args, str) else json.dumps(args)):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": frag}}]})
        yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
        if want_usage and self.faults.include_usage:
            yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                        "model": model, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def serve_main(server_class: type[SseHttpServer], label: str, argv: list[str] | None = None) -> None:
    """Command line shared by the SSE fakes: one scripted reply, a few faults, serve until Ctrl-C."""
    from esl_agent import runtime

    runtime.init()
    parser = argparse.ArgumentParser(description=f"{label} loopback server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--text", default="Hello! How can I help you today?")
    parser.add_argument("--first-chunk-delay", type=float, default=0.0)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=0)
    args = parser.parse_args(argv)
    server = server_class([ScriptedReply(text=args.text)], port=args.port)
    server.faults = Faults(first_chunk_delay=args.first_chunk_delay, chunk_delay=args.chunk_delay,
                           status=args.status)
    server.start()
    print(f"{label} loopback on {server.url}", flush=True)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve the OpenAI-compatible fake (base URL: <url>/v1)."""
    serve_main(OpenAiSseServer, "openai-compatible", argv)


if __name__ == "__main__":
    main()
