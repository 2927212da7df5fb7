"""Loopback provider servers with wire timestamps, per-call fault switches and chunk markers.

Subclasses of the project's loopback servers (esl_agent.sim): the same protocols and fixed
latencies, plus what the benchmarks need to read off the wire:

- `BenchGoogle`: every STT response is stamped when it is handed to gRPC (`stt_events[i]` for
  stream `i`); every TTS stream records when it arrived, when its text arrived, when the first
  chunk left, and when the RPC ended (and whether the client cancelled it). With `mark_chunks`
  each TTS chunk carries a 6-byte marker (magic + id) in its first samples, so the simulator can
  match every outgoing frame to the moment the server sent it. Faults are per call (by the
  caller's name, which the text of every reply contains) or per STT stream.
- `BenchLlm`: OpenAI-compatible SSE; the reply is chosen from the request (the caller's name in
  the system prompt and the number of user turns); every chunk is stamped when written.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import gevent
import grpc
from google.cloud import speech_v1, texttospeech_v1

from benchmarks.common import reply_texts
from esl_agent.providers.tone_tts import tone_pcm
from esl_agent.sim.google_grpc import _STT_SERVICE, _TTS_SERVICE, GoogleLoopbackServer
from esl_agent.sim.openai_sse import OpenAiSseServer, ScriptedReply

MAGIC = b"\x7f\x7e"  # int16 0x7e7f = 32383: never produced by the tone voice (amplitude 2000)
_NAME = re.compile(r"Caller name: ([^\n]+)")


@dataclass
class TtsStream:
    """One StreamingSynthesize call as the server saw it (monotonic seconds)."""

    received: float
    text: str = ""
    text_at: float | None = None
    first_chunk: float | None = None
    chunks: int = 0
    done: float | None = None  # the handler returned (all audio sent, or it gave up)
    ended: float | None = None  # gRPC reported the RPC over (cancel or completion)
    cancelled: bool = False
    failed: bool = False


@dataclass
class SttStreamTimes:
    """Responses of one recognition stream: (sent_at, transcript, is_final)."""

    events: list[tuple[float, str, bool]] = field(default_factory=list)
    cut: bool = False


class BenchGoogle(GoogleLoopbackServer):
    """Google STT + TTS loopback with wire timestamps (see the module docstring)."""

    def __init__(self, *args: Any, workers: int = 4096, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers
        self.stt_times: list[SttStreamTimes] = []
        self.tts_streams: list[TtsStream] = []
        self.tts_fail_names: set[str] = set()
        self.stt_cut_streams: dict[int, int] = {}  # stream index -> abort at this interim
        self.mark_chunks = False
        self.chunk_sent: dict[int, float] = {}
        self._chunk_ids = itertools.count(1)

    def start(self) -> BenchGoogle:
        # Same handlers as the parent, but a pool big enough for hundreds of concurrent streams.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.workers),
                             maximum_concurrent_rpcs=None)
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(_STT_SERVICE, {
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self._streaming_recognize,
                    request_deserializer=speech_v1.StreamingRecognizeRequest.deserialize,
                    response_serializer=speech_v1.StreamingRecognizeResponse.serialize),
            }),
            grpc.method_handlers_generic_handler(_TTS_SERVICE, {
                "StreamingSynthesize": grpc.stream_stream_rpc_method_handler(
                    self._streaming_synthesize,
                    request_deserializer=texttospeech_v1.StreamingSynthesizeRequest.deserialize,
                    response_serializer=texttospeech_v1.StreamingSynthesizeResponse.serialize),
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self._synthesize_speech,
                    request_deserializer=texttospeech_v1.SynthesizeSpeechRequest.deserialize,
                    response_serializer=texttospeech_v1.SynthesizeSpeechResponse.serialize),
            }),
        ))
        self.port = server.add_insecure_port(f"{self._host}:{self._want_port}")
        server.start()
        self._server = server
        return self

    # ------------------------------------------------------------------------------ STT

    def _streaming_recognize(self, requests: Iterator[Any], context: grpc.ServicerContext
                             ) -> Iterator[Any]:
        index = len(self.stt_times)
        times = SttStreamTimes()
        self.stt_times.append(times)
        inner = super()._streaming_recognize(requests, context)
        interims = 0
        try:
            for response in inner:
                now = time.monotonic()
                for result in response.results:
                    text = result.alternatives[0].transcript if result.alternatives else ""
                    times.events.append((now, text, bool(result.is_final)))
                    interims += 0 if result.is_final else 1
                cut_at = self.stt_cut_streams.get(index)
                if cut_at is not None and interims >= cut_at:
                    times.cut = True
                    times.events.append((time.monotonic(), "<cut>", False))
                    context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                  "Exceeded maximum allowed stream duration of 305 seconds.")
                yield response
        finally:
            inner.close()

    # ------------------------------------------------------------------------------ TTS

    def _streaming_synthesize(self, requests: Iterator[Any],
                              context: grpc.ServicerContext) -> Iterator[Any]:
        stream = TtsStream(received=time.monotonic())
        self.tts_streams.append(stream)
        context.add_callback(lambda: self._tts_over(stream))
        try:
            first = next(iter(requests), None)
            if first is None or not first.streaming_config:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry streaming_config")
            rate = first.streaming_config.streaming_audio_config.sample_rate_hertz or 24000
            step = rate * self.tts.chunk_ms // 1000 * 2
            first_chunk = True
            for request in requests:
                text = request.input.text
                stream.text += text
                if stream.text_at is None:
                    stream.text_at = time.monotonic()
                if any(name in text for name in self.tts_fail_names):
                    stream.failed = True
                    context.abort(grpc.StatusCode.UNAVAILABLE, "loopback: text-to-speech is down")
                pcm = tone_pcm(text, rate, self.tts.ms_per_char)
                for offset in range(0, len(pcm), step):
                    gevent.sleep(self.tts.first_chunk_delay if first_chunk else self.tts.chunk_delay)
                    first_chunk = False
                    if not context.is_active():
                        stream.cancelled = True
                        return
                    chunk = pcm[offset:offset + step]
                    if self.mark_chunks and len(chunk) >= 6:
                        chunk_id = next(self._chunk_ids)
                        chunk = MAGIC + chunk_id.to_bytes(4, "little") + chunk[6:]
                        self.chunk_sent[chunk_id] = time.monotonic()
                    if stream.first_chunk is None:
                        stream.first_chunk = time.monotonic()
                    stream.chunks += 1
                    yield texttospeech_v1.StreamingSynthesizeResponse(audio_content=chunk)
        finally:
            stream.done = time.monotonic()

    @staticmethod
    def _tts_over(stream: TtsStream) -> None:
        stream.ended = time.monotonic()
        if stream.done is None:  # the RPC ended while the handler was still sending: a cancel
            stream.cancelled = True


class BenchLlm(OpenAiSseServer):
    """OpenAI-compatible SSE loopback answering per call and per turn, chunks stamped."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.stall_names: set[str] = set()
        self._chosen: ScriptedReply | None = None

    def next_reply(self) -> ScriptedReply:
        chosen, self._chosen = self._chosen, None
        return chosen or super().next_reply()

    def respond(self, ex: Any, record: Any) -> None:
        caller = caller_name(record.body)
        users = sum(1 for m in record.body.get("messages", []) if m.get("role") == "user")
        texts = reply_texts(caller or "there")
        record.caller = caller
        record.user_turns = users
        record.chunk_log = log = []
        if caller and caller in self.stall_names:  # this provider times out for this caller
            ex.start(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked",
                           "Connection": "close"})
            ex.wait(60.0)
            return
        self._chosen = ScriptedReply(text=texts[min(max(users, 1), len(texts)) - 1])
        write = ex.chunk

        def stamped(data: bytes) -> None:
            write(data)
            log.append((time.monotonic(), data))

        ex.chunk = stamped
        super().respond(ex, record)


def caller_name(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        if message.get("role") == "system":
            found = _NAME.search(str(message.get("content", "")))
            if found:
                return found.group(1).strip()
    return ""


def sse_text(data: bytes) -> str:
    """The text delta carried by one SSE chunk ('' for role/finish/usage/[DONE])."""
    out = []
    for line in data.split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        try:
            payload = json.loads(line[6:])
        except ValueError:
            continue
        for choice in payload.get("choices") or []:
            out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)
