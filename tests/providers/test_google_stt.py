"""Google STT v1 through the real google-cloud-speech client against the loopback gRPC server."""

from __future__ import annotations

import gevent
import gevent.event
import grpc
import pytest

from esl_agent.config import GoogleSttSettings
from esl_agent.errors import ProviderError
from esl_agent.providers.google_stt import MAX_REQUEST_BYTES, GoogleSpeechToText
from esl_agent.sim.google_grpc import GoogleLoopbackServer, SttScript

from .audio import frames, silence, voiced

pytestmark = pytest.mark.wire


def make_stt(server, **options):
    settings = GoogleSttSettings(endpoint=server.url, insecure=True, **options)
    return GoogleSpeechToText(settings, endpoint=server.url)


class Collector:
    """Iterates a stream in its own greenlet; signals each final transcript."""

    def __init__(self, stream):
        self.items = []
        self.error = None
        self.final = gevent.event.Event()
        self.greenlet = gevent.spawn(self._run, stream)

    def _run(self, stream):
        try:
            for t in stream:
                self.items.append(t)
                if t.final:
                    self.final.set()
        except Exception as exc:
            self.error = exc

    def finals(self):
        return [t.text for t in self.items if t.final]

    def wait_final(self, timeout=5.0):
        assert self.final.wait(timeout), "no final transcript"
        self.final.clear()


def push_all(stream, pcm):
    for frame in frames(pcm):
        stream.push(frame)
        gevent.sleep(0)


def test_interim_then_final_transcripts_and_request_shape():
    script = SttScript(utterances=["connect me to anna berger", "thank you"])
    with GoogleLoopbackServer(script) as server:
        stt = make_stt(server, model="phone_call", use_enhanced=True)
        stream = stt.open_stream(sample_rate=8000, language="en-GB")
        got = Collector(stream)
        audio = silence(200) + voiced(1200) + silence(500) + voiced(600) + silence(400)
        push_all(stream, audio)
        stream.close()
        got.greenlet.join(10)
        assert got.error is None
        assert got.finals() == ["connect me to anna berger", "thank you"]
        first_final = next(i for i, t in enumerate(got.items) if t.final)
        interims = [t.text for t in got.items[:first_final]]
        assert interims[0] == "connect" and interims[-1] == "connect me to anna berger"
        assert all(not t.final for t in got.items[:first_final])
        (record,) = server.wait_streams(1)
        cfg = record.config
        assert cfg.interim_results
        assert cfg.config.sample_rate_hertz == 8000 and cfg.config.language_code == "en-GB"
        assert cfg.config.model == "phone_call" and cfg.config.use_enhanced
        assert cfg.config.encoding == cfg.config.AudioEncoding.LINEAR16
        assert bytes(record.audio) == audio
        assert record.max_request_bytes == 1600  # 100 ms at 8 kHz: 20 ms frames coalesced
        assert record.ended == "half-close"


def test_planned_restart_after_a_final_loses_no_audio():
    with GoogleLoopbackServer(SttScript(utterances=["first part", "second part"])) as server:
        settings = GoogleSttSettings(endpoint=server.url, insecure=True,
                                     stream_restart_seconds=0.001)  # restart at the first final
        stt = GoogleSpeechToText(settings, endpoint=server.url, restart_grace=60)
        stream = stt.open_stream(sample_rate=8000, language="en-US")
        got = Collector(stream)
        part1 = silence(100) + voiced(600) + silence(400)
        part2 = silence(300) + voiced(500) + silence(400) + silence(230)  # odd tail: not 100 ms
        push_all(stream, part1)
        got.wait_final()
        push_all(stream, part2)
        stream.close()
        got.greenlet.join(10)
        assert got.error is None
        assert got.finals() == ["first part", "second part"]
        assert stream.restarts >= 1  # after the first final (and maybe the second)
        records = server.wait_streams(stream.restarts + 1)
        assert len(server.stt_streams) == stream.restarts + 1
        assert all(r.ended == "half-close" for r in records)
        received = b"".join(bytes(r.audio) for r in records)
        assert len(received) == len(part1) + len(part2)
        assert received == part1 + part2


def test_out_of_range_restart_resends_unacknowledged_audio():
    script = SttScript(utterances=["hello there", "please connect me"], abort_after_seconds=1.5)
    with GoogleLoopbackServer(script) as server:
        stt = make_stt(server)
        stream = stt.open_stream(sample_rate=8000, language="en-US")
        got = Collector(stream)
        audio = silence(100) + voiced(500) + silence(400) + voiced(700) + silence(350)
        push_all(stream, audio)
        stream.close()
        got.greenlet.join(10)
        assert got.error is None
        assert got.finals() == ["hello there", "please connect me"]
        assert stream.restarts == 1
        first, second = server.wait_streams(2)
        assert first.ended == "aborted"
        # The second stream starts where the first final result ended: nothing was lost.
        acked = int(0.6 * 8000) * 2  # result_end_time of "hello there" (100 + 500 ms)
        assert bytes(first.audio[:acked]) + bytes(second.audio) == audio


def test_other_grpc_errors_surface_as_provider_error():
    script = SttScript(utterances=["x"], abort_after_seconds=0.3,
                       abort_code=grpc.StatusCode.PERMISSION_DENIED, abort_message="no access")
    with GoogleLoopbackServer(script) as server:
        stream = make_stt(server).open_stream(sample_rate=8000, language="en-US")
        got = Collector(stream)
        push_all(stream, silence(600))
        got.greenlet.join(10)
        assert isinstance(got.error, ProviderError) and "PermissionDenied" in str(got.error)


def test_large_pushes_are_split_under_the_request_limit():
    with GoogleLoopbackServer(SttScript()) as server:
        stt = GoogleSpeechToText(GoogleSttSettings(insecure=True), endpoint=server.url,
                                 request_ms=2000)
        stream = stt.open_stream(sample_rate=16000, language="en-US")
        got = Collector(stream)
        stream.push(silence(3000, 16000))
        stream.close()
        got.greenlet.join(10)
        (record,) = server.wait_streams(1)
        assert len(record.audio) == 96000
        assert 0 < record.max_request_bytes <= MAX_REQUEST_BYTES


def test_abandoning_the_stream_cancels_the_call():
    with GoogleLoopbackServer(SttScript(utterances=["hello there"])) as server:
        stream = make_stt(server).open_stream(sample_rate=8000, language="en-US")
        push_all(stream, voiced(600) + silence(400))
        for transcript in stream:
            if transcript.final:
                break  # the consumer walks away without close()
        (record,) = server.wait_streams(1)
        assert record.ended == "cancelled"
