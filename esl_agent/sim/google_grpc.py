"""Loopback gRPC server for Google Speech-to-Text v1 and Text-to-Speech v1.

Implements `google.cloud.speech.v1.Speech/StreamingRecognize` and
`google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech` + `StreamingSynthesize` through
generic handlers that (de)serialise with the client library's own proto-plus message types, so
the real `google-cloud-speech` / `google-cloud-texttospeech` clients talk to it over a real
HTTP/2 wire. It runs in-process under gevent (grpc's gevent mode; checked to work here).

STT script: utterances are detected by energy in the received L16 audio. While one is voiced,
interim results show the next scripted text word by word; after `end_silence_ms` of silence a
final result carries the whole text (after an optional per-utterance latency) with
`result_end_time` at the end of the voiced audio. Scripted texts are used in order across
streams. Faults: `abort_after_seconds` (of audio in one stream) ends the stream with
`abort_code` (OUT_OF_RANGE by default, the way Google ends a stream after 305 s).

TTS: deterministic tone audio (`tone_pcm`) for the input text at the requested rate; LINEAR16
gets a 44-byte WAV header like the real service, PCM none. Every request is recorded.
Run `python -m esl_agent.sim.google_grpc --port 50051 --say "hello there"` to serve it standalone.
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.queue
import grpc
import numpy as np
from google.cloud import speech_v1, texttospeech_v1
from google.protobuf import duration_pb2

from esl_agent.providers.tone_tts import tone_pcm

_STT_SERVICE = "google.cloud.speech.v1.Speech"
_TTS_SERVICE = "google.cloud.texttospeech.v1.TextToSpeech"
_END = object()
_CANCEL_GRACE = 0.1  # seconds to tell a client's cancel from its half-close


@dataclass
class SttStreamRecord:
    """One StreamingRecognize call as the server saw it."""

    config: Any = None  # the StreamingRecognitionConfig of the first request
    audio: bytearray = field(default_factory=bytearray)
    requests: int = 0
    max_request_bytes: int = 0
    request_times: list[float] = field(default_factory=list)
    results_sent: list[tuple[str, bool]] = field(default_factory=list)  # (transcript, is_final)
    ended: str = ""  # half-close | cancelled | aborted
    done: gevent.event.Event = field(default_factory=gevent.event.Event, repr=False)


@dataclass
class TtsRecord:
    """One TTS call: which method, the voice/audio settings and the text(s) asked for."""

    method: str
    texts: list[str]
    encoding: int
    sample_rate: int
    voice: str
    received_at: float
    chunks_sent: int = 0
    cancelled: bool = False
    done: gevent.event.Event = field(default_factory=gevent.event.Event, repr=False)


@dataclass
class SttScript:
    """What the fake recogniser says and how it behaves."""

    utterances: list[str] = field(default_factory=list)
    energy_threshold: float = 300.0  # RMS of a 20 ms frame that counts as speech
    end_silence_ms: int = 300
    interim_every_ms: int = 200  # one more word of interim text per this much voiced audio
    latency: list[float] = field(default_factory=list)  # seconds before each final (by index)
    abort_after_seconds: float = 0.0  # 0 = off; abort a stream after this much audio
    abort_code: grpc.StatusCode = grpc.StatusCode.OUT_OF_RANGE
    abort_message: str = "Exceeded maximum allowed stream duration of 305 seconds."


@dataclass
class TtsScript:
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_ms: int = 100  # size of streamed audio chunks
    ms_per_char: float = 60.0


class GoogleLoopbackServer:
    """The fake Google STT + TTS gRPC server on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, stt: SttScript | None = None, tts: TtsScript | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.stt = stt or SttScript()
        self.tts = tts or TtsScript()
        self.stt_streams: list[SttStreamRecord] = []
        self.tts_requests: list[TtsRecord] = []
        self._next_utterance = 0
        self._host = host
        self._want_port = port
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """host:port for `endpoint` settings."""
        return f"127.0.0.1:{self.port}"

    endpoint = url

    def start(self) -> GoogleLoopbackServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(_STT_SERVICE, {
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self._streaming_recognize,
                    request_deserializer=speech_v1.StreamingRecognizeRequest.deserialize,
                    response_serializer=speech_v1.StreamingRecognizeResponse.serialize),
            }),
            grpc.method_handlers_generic_handler(_TTS_SERVICE, {
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self._synthesize_speech,
                    request_deserializer=texttospeech_v1.SynthesizeSpeechRequest.deserialize,
                    response_serializer=texttospeech_v1.SynthesizeSpeechResponse.serialize),
                "StreamingSynthesize": grpc.stream_stream_rpc_method_handler(
                    self._streaming_synthesize,
                    request_deserializer=texttospeech_v1.StreamingSynthesizeRequest.deserialize,
                    response_serializer=texttospeech_v1.StreamingSynthesizeResponse.serialize),
            }),
        ))
        self.port = server.add_insecure_port(f"{self._host}:{self._want_port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0)
            self._server = None

    def __enter__(self) -> GoogleLoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_streams(self, count: int, timeout: float = 5.0) -> list[SttStreamRecord]:
        """Block until `count` recognition streams have ended (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        while len(self.stt_streams) < count and time.monotonic() < deadline:
            gevent.sleep(0.01)
        for record in self.stt_streams[:count]:
            if not record.done.wait(max(deadline - time.monotonic(), 0)):
                raise TimeoutError("a recognition stream did not end in time")
        if len(self.stt_streams) < count:
            raise TimeoutError(f"expected {count} streams, got {len(self.stt_streams)}")
        return self.stt_streams[:count]

    # ------------------------------------------------------------------------------- STT

    def _take_text(self) -> tuple[str, float]:
        i = self._next_utterance
        self._next_utterance += 1
        text = self.stt.utterances[i] if i < len(self.stt.utterances) else ""
        latency = self.stt.latency[i] if i < len(self.stt.latency) else 0.0
        return text, latency

    def _streaming_recognize(self, requests: Iterator[Any], context: grpc.ServicerContext
                             ) -> Iterator[Any]:
        record = SttStreamRecord()
        self.stt_streams.append(record)
        out: gevent.queue.Queue = gevent.queue.Queue()
        terminated = gevent.event.Event()  # set when the RPC ends; before we return = cancelled
        context.add_callback(terminated.set)
        reader = gevent.spawn(self._read_audio, requests, record, out)
        try:
            while True:
                item = out.get()
                if item is _END:
                    # A cancel may first look like the end of the request stream; grpc reports
                    # the cancellation itself a moment later.
                    if not record.ended:
                        cancelled = terminated.wait(_CANCEL_GRACE)
                        record.ended = "cancelled" if cancelled else "half-close"
                    return
                if isinstance(item, tuple):  # (code, message): a scripted abort
                    record.ended = "aborted"
                    context.abort(item[0], item[1])
                yield item
        finally:
            reader.kill(block=False)
            record.done.set()

    def _read_audio(self, requests: Iterator[Any], record: SttStreamRecord,
                    out: gevent.queue.Queue) -> None:
        script = self.stt
        detector: _Utterances | None = None
        try:
            for request in requests:
                record.requests += 1
                record.request_times.append(time.monotonic())
                if request.streaming_config and record.config is None and record.requests == 1:
                    record.config = request.streaming_config
                    rate = request.streaming_config.config.sample_rate_hertz or 16000
                    detector = _Utterances(self, rate, out, record)
                    continue
                chunk = request.audio_content
                record.max_request_bytes = max(record.max_request_bytes, len(chunk))
                record.audio += chunk
                if detector is None:
                    out.put((grpc.StatusCode.INVALID_ARGUMENT,
                             "the first request must carry streaming_config"))
                    return
                detector.feed(chunk)
                seconds = len(record.audio) / (2 * detector.rate)
                if script.abort_after_seconds and seconds >= script.abort_after_seconds:
                    if detector.in_speech and detector.text:
                        self._next_utterance -= 1  # that utterance was never finalised
                    out.put((script.abort_code, script.abort_message))
                    return
        except grpc.RpcError:  # the client cancelled the call
            record.ended = "cancelled"
            out.put(_END)
            return
        if detector is not None:
            detector.flush()
            detector.wait_pending()
        out.put(_END)

    # ------------------------------------------------------------------------------- TTS

    def _synthesize_speech(self, request: Any, context: grpc.ServicerContext) -> Any:
        cfg = request.audio_config
        rate = cfg.sample_rate_hertz or 24000
        record = TtsRecord("SynthesizeSpeech", [request.input.text], int(cfg.audio_encoding), rate,
                           request.voice.name, time.monotonic())
        self.tts_requests.append(record)
        try:
            gevent.sleep(self.tts.first_chunk_delay)
            pcm = tone_pcm(request.input.text, rate, self.tts.ms_per_char)
            if cfg.audio_encoding == texttospeech_v1.AudioEncoding.LINEAR16:
                pcm = wav_header(len(pcm), rate) + pcm
            elif cfg.audio_encoding != texttospeech_v1.AudioEncoding.PCM:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "loopback supports LINEAR16 and PCM")
            record.chunks_sent = 1
            return texttospeech_v1.SynthesizeSpeechResponse(audio_content=pcm)
        finally:
            record.done.set()

    def _streaming_synthesize(self, requests: Iterator[Any],
                              context: grpc.ServicerContext) -> Iterator[Any]:
        record = TtsRecord("StreamingSynthesize", [], 0, 0, "", time.monotonic())
        self.tts_requests.append(record)
        context.add_callback(lambda: setattr(record, "cancelled", not record.done.is_set()))
        try:
            first = next(iter(requests), None)
            if first is None or not first.streaming_config:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "the first request must carry streaming_config")
            cfg = first.streaming_config.streaming_audio_config
            record.encoding = int(cfg.audio_encoding)
            record.sample_rate = cfg.sample_rate_hertz or 24000
            record.voice = first.streaming_config.voice.name
            if cfg.audio_encoding != texttospeech_v1.AudioEncoding.PCM:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "loopback streams PCM only")
            step = record.sample_rate * self.tts.chunk_ms // 1000 * 2
            first_chunk = True
            for request in requests:
                text = request.input.text
                record.texts.append(text)
                pcm = tone_pcm(text, record.sample_rate, self.tts.ms_per_char)
                for offset in range(0, len(pcm), step):
                    gevent.sleep(self.tts.first_chunk_delay if first_chunk else self.tts.chunk_delay)
                    first_chunk = False
                    if not context.is_active():
                        record.cancelled = True
                        return
                    record.chunks_sent += 1
                    yield texttospeech_v1.StreamingSynthesizeResponse(
                        audio_content=pcm[offset:offset + step])
        finally:
            record.done.set()


class _Utterances:
    """Energy endpointing over 20 ms frames, emitting interim and final results."""

    def __init__(self, server: GoogleLoopbackServer, rate: int, out: gevent.queue.Queue,
                 record: SttStreamRecord) -> None:
        self.server = server
        self.rate = rate
        self.out = out
        self.record = record
        self.frame_bytes = rate // 50 * 2
        self.buf = b""
        self.offset = 0  # bytes of audio consumed in this stream
        self.voiced_ms = 0
        self.silence_ms = 0
        self.in_speech = False
        self.last_voiced_end = 0
        self.words_shown = 0
        self.text = ""
        self.latency = 0.0
        self.pending: list[gevent.Greenlet] = []

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        while len(self.buf) >= self.frame_bytes:
            frame, self.buf = self.buf[:self.frame_bytes], self.buf[self.frame_bytes:]
            self.offset += len(frame)
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        voiced = float(np.sqrt(np.mean(samples * samples))) >= self.server.stt.energy_threshold
        script = self.server.stt
        if voiced:
            if not self.in_speech:
                self.in_speech = True
                self.voiced_ms = 0
                self.words_shown = 0
                self.text, self.latency = self.server._take_text()
            self.voiced_ms += 20
            self.silence_ms = 0
            self.last_voiced_end = self.offset
            words = self.text.split()
            want = min(len(words), self.voiced_ms // script.interim_every_ms)
            if want > self.words_shown:
                self.words_shown = want
                self._emit(" ".join(words[:want]), final=False)
        elif self.in_speech:
            self.silence_ms += 20
            if self.silence_ms >= script.end_silence_ms:
                self._finish()

    def flush(self) -> None:
        if self.in_speech:
            self._finish()

    def _finish(self) -> None:
        self.in_speech = False
        if not self.text:
            return
        end_seconds = self.last_voiced_end / (2 * self.rate)
        text, latency = self.text, self.latency
        if latency > 0:
            self.pending.append(gevent.spawn_later(latency, self._emit, text, True, end_seconds))
        else:
            self._emit(text, True, end_seconds)

    def wait_pending(self) -> None:
        gevent.joinall(self.pending)

    def _emit(self, text: str, final: bool, end_seconds: float | None = None) -> None:
        seconds = self.offset / (2 * self.rate) if end_seconds is None else end_seconds
        end = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
        result = speech_v1.StreamingRecognitionResult(
            alternatives=[speech_v1.SpeechRecognitionAlternative(
                transcript=text, confidence=0.92 if final else 0.0)],
            is_final=final, stability=0.0 if final else 0.8, result_end_time=end,
            language_code="en-us")
        self.record.results_sent.append((text, final))
        self.out.put(speech_v1.StreamingRecognizeResponse(results=[result]))


# ----------------------------------------------------------------------------------- TTS


def wav_header(data_len: int, rate: int) -> bytes:
    """The 44-byte RIFF/WAVE header Google puts in front of LINEAR16 audio."""
    return b"RIFF" + struct.pack("<I4s4sIHHIIHH4sI", 36 + data_len, b"WAVE", b"fmt ", 16, 1, 1,
                                 rate, rate * 2, 2, 16, b"data", data_len)


def main(argv: list[str] | None = None) -> None:
    """Serve the fake until interrupted."""
    from esl_agent import runtime

    runtime.init()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--say", action="append", default=[], help="scripted utterance (repeat)")
    args = parser.parse_args(argv)
    server = GoogleLoopbackServer(SttScript(utterances=args.say), port=args.port).start()
    print(f"google speech/tts loopback on {server.url} (insecure)", flush=True)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
