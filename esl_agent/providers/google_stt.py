"""Google Cloud Speech-to-Text v1 streaming recognition (`streaming_recognize`).

One gRPC client per provider instance, one bidirectional stream per call. Pushed 20 ms frames
are coalesced into ~100 ms requests (always under the 25 KB limit) and fed from a gevent queue.
Google ends a stream after ~305 s, so the stream is restarted before `stream_restart_seconds`:
preferably right after a final result (nothing is lost: the old stream is half-closed and keeps
answering for the audio it got, while new audio waits in the queue for the new stream), at the
latest `restart_grace` seconds later (default 10%, at most 20 s). If Google ends a stream with
OUT_OF_RANGE or ABORTED, the audio not yet covered by a final result is sent again at the start
of the new stream.
Other gRPC errors surface from iteration as ProviderError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import gevent.queue
from google.api_core import exceptions as gexc
from google.cloud import speech_v1
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcTransport

from esl_agent.config import GoogleSttSettings
from esl_agent.errors import ProviderError
from esl_agent.providers.base import Transcript
from esl_agent.providers.google_common import make_client

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16000  # well below Google's 25 KB per request
_CLOSE = object()
_STALE = object()  # wakes a generator whose stream is over, so it cannot take new audio
_RESTARTABLE = (gexc.OutOfRange, gexc.Aborted)


class GoogleSpeechToText:
    """SpeechToText over Google STT v1; `open_stream` is cheap, the client is shared."""

    def __init__(
        self,
        options: GoogleSttSettings,
        *,
        endpoint: str = "",
        credentials_file: str = "",
        request_ms: int = 100,
        restart_grace: float | None = None,
    ) -> None:
        self.name = "google"
        self.options = options
        self.request_ms = request_ms
        # seconds after stream_restart_seconds by which a stream is restarted even mid-utterance
        self.restart_grace = restart_grace
        self.client = make_client(speech_v1.SpeechClient, SpeechGrpcTransport, endpoint=endpoint,
                                  insecure=options.insecure, credentials_file=credentials_file)

    def open_stream(self, *, sample_rate: int, language: str) -> GoogleSttStream:
        return GoogleSttStream(self.client, self.options, sample_rate, language, self.request_ms,
                               self.restart_grace)


class GoogleSttStream:
    """One call's recognition: `push` L16 frames, iterate Transcripts (interim and final)."""

    def __init__(self, client: Any, options: GoogleSttSettings, sample_rate: int, language: str,
                 request_ms: int = 100, restart_grace: float | None = None) -> None:
        self._client = client
        self._options = options
        self.sample_rate = sample_rate
        self._config = speech_v1.StreamingRecognitionConfig(
            config=speech_v1.RecognitionConfig(
                encoding=speech_v1.RecognitionConfig.AudioEncoding.LINEAR16,
                sample_rate_hertz=sample_rate,
                language_code=language,
                model=options.model,
                use_enhanced=options.use_enhanced,
                enable_automatic_punctuation=True,
                audio_channel_count=1,
            ),
            interim_results=True,
        )
        self._request_bytes = min(max(sample_rate * 2 * request_ms // 1000, 320), MAX_REQUEST_BYTES)
        self._queue: gevent.queue.Queue = gevent.queue.Queue()
        self._pending = bytearray()
        self._closed = False  # close() called: no more pushes
        self._ended = False  # the request generator saw the close marker
        self._unacked = bytearray()  # audio of this stream after the last final result
        self._unacked_start = 0  # stream byte offset of _unacked[0]
        self._session = 0
        self._call: Any = None
        self.restarts = 0  # how many times the stream was restarted (for metrics and tests)
        restart = options.stream_restart_seconds
        self._restart_after = restart
        grace = min(20.0, restart * 0.1) if restart_grace is None else restart_grace
        self._hard_restart_after = restart + grace

    # -- input side
    def push(self, pcm: bytes) -> None:
        """Queue audio; ~100 ms requests are formed here, never blocks."""
        if self._closed:
            return
        self._pending += pcm
        n = self._request_bytes
        while len(self._pending) >= n:
            self._queue.put(bytes(self._pending[:n]))
            del self._pending[:n]

    def close(self) -> None:
        """No more audio: flush, half-close; iteration ends after the last results."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            self._queue.put(bytes(self._pending))
            self._pending.clear()
        self._queue.put(_CLOSE)

    # -- output side
    def __iter__(self) -> Iterator[Transcript]:
        return self._run()

    def _run(self) -> Iterator[Transcript]:
        resend = b""
        fruitless = 0  # consecutive restarts that produced no response at all
        try:
            while True:
                self._session += 1
                session = self._session
                started = time.monotonic()
                got_response = False
                try:
                    self._call = self._client.streaming_recognize(
                        config=self._config, requests=self._requests(session, started, resend),
                        retry=None, timeout=self._hard_restart_after + 60)
                    for response in self._call:
                        got_response = True
                        yield from self._transcripts(response, session, started)
                except _RESTARTABLE as exc:
                    fruitless = 0 if got_response else fruitless + 1
                    if fruitless >= 3:
                        raise ProviderError(f"google stt: stream keeps failing: {exc.message}") from exc
                    self._swap_queue()
                    if self._ended:  # all audio was sent already; only the unrecognised tail
                        if not self._unacked:
                            return
                        self._ended = False
                        self._queue.put(_CLOSE)  # ... is resent, then the new stream half-closes
                    resend = bytes(self._unacked)
                    self._unacked_start = 0
                    self.restarts += 1
                    log.info("google stt stream ended by the service (%s); restarting, resending "
                             "%d bytes", type(exc).__name__, len(resend))
                    continue
                except gexc.GoogleAPICallError as exc:
                    raise ProviderError(f"google stt: {type(exc).__name__}: {exc.message}") from exc
                if self._ended:
                    return
                # A planned restart: the old stream answered for all audio it got.
                self._swap_queue()
                resend = b""
                self._unacked.clear()
                self._unacked_start = 0
                self.restarts += 1
                fruitless = 0
                log.debug("google stt stream restarted after %.1fs", time.monotonic() - started)
        finally:
            self._finish()

    def _finish(self) -> None:
        """Iteration is over (done, failed or abandoned): cancel a live call, stop the feeder."""
        call = self._call
        if call is not None and call.is_active():
            call.cancel()
        if not self._ended:
            self._closed = True
            self._queue.put(_STALE)

    def _swap_queue(self) -> None:
        """Give the next stream a fresh queue holding the audio not sent yet, in order.

        A request generator of a finished stream may still be waiting on the old queue (grpc
        consumes it from another greenlet); it gets _STALE and can never take new audio.
        Runs without yielding, so no push() can interleave.
        """
        old, new = self._queue, gevent.queue.Queue()
        while not old.empty():
            item = old.get_nowait()
            if not isinstance(item, tuple):
                new.put(item)
        old.put(_STALE)
        self._queue = new

    def _requests(self, session: int, started: float, resend: bytes) -> Iterator[Any]:
        """Audio requests for one stream (the SDK helper sends the config request first)."""
        queue = self._queue
        for offset in range(0, len(resend), MAX_REQUEST_BYTES):
            yield speech_v1.StreamingRecognizeRequest(
                audio_content=resend[offset:offset + MAX_REQUEST_BYTES])
        hard_deadline = started + self._hard_restart_after
        while True:
            left = hard_deadline - time.monotonic()
            if left <= 0:
                return
            try:
                item = queue.get(timeout=min(left, 0.5))
            except gevent.queue.Empty:
                continue
            if item is _STALE:
                return
            if item is _CLOSE:
                self._ended = True
                return
            if isinstance(item, tuple):  # ("restart", session) after a final result
                if item[1] == session:
                    return
                continue
            self._unacked += item
            yield speech_v1.StreamingRecognizeRequest(audio_content=item)

    def _transcripts(self, response: Any, session: int, started: float) -> Iterator[Transcript]:
        interim: list[str] = []
        stability = 0.0
        for result in response.results:
            if not result.alternatives:
                continue
            best = result.alternatives[0]
            if result.is_final:
                self._acknowledge(result.result_end_time)
                yield Transcript(best.transcript.strip(), final=True, stability=1.0,
                                 confidence=best.confidence)
                if time.monotonic() - started >= self._restart_after:
                    self._queue.put(("restart", session))
            else:
                interim.append(best.transcript.strip())
                stability = max(stability, result.stability)
        text = " ".join(t for t in interim if t)
        if text:
            yield Transcript(text, final=False, stability=stability)

    def _acknowledge(self, end_time: Any) -> None:
        """Drop audio up to a final result's end: it never needs resending."""
        seconds = end_time.total_seconds() if hasattr(end_time, "total_seconds") else 0.0
        end = int(seconds * self.sample_rate) * 2
        drop = end - self._unacked_start
        if drop > 0:
            del self._unacked[:drop]
            self._unacked_start = end
