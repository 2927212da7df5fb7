"""Google TTS through the real google-cloud-texttospeech client against the loopback server."""

from __future__ import annotations

import pytest

from esl_agent.config import GoogleTtsSettings
from esl_agent.errors import ProviderError
from esl_agent.providers.base import NoTurn
from esl_agent.providers.google_tts import GoogleTextToSpeech, strip_wav_header
from esl_agent.providers.tone_tts import tone_pcm
from esl_agent.sim.google_grpc import GoogleLoopbackServer, TtsScript, wav_header

from .helpers import Turn

pytestmark = pytest.mark.wire

TEXT = "Hello, you have reached the front desk."


def make_tts(server, streaming):
    options = GoogleTtsSettings(endpoint=server.url, insecure=True, streaming=streaming,
                                voice="en-US-Chirp3-HD-Kore", speaking_rate=1.1)
    return GoogleTextToSpeech(options, endpoint=server.url, sample_rate=8000)


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "unary"])
def test_returns_8khz_pcm_of_the_right_length(streaming):
    with GoogleLoopbackServer() as server:
        tts = make_tts(server, streaming)
        chunks = list(tts.synthesize(TEXT, NoTurn()))
        audio = b"".join(chunks)
        expected = tone_pcm(TEXT, 8000)  # what the loopback voice says for this text at 8 kHz
        assert audio == expected  # no WAV header, nothing lost, right rate
        assert len(audio) == len(TEXT) * 60 * 8 * 2
        (record,) = server.tts_requests
        assert record.sample_rate == 8000 and record.voice == "en-US-Chirp3-HD-Kore"
        assert record.texts == [TEXT]
        assert record.method == ("StreamingSynthesize" if streaming else "SynthesizeSpeech")
        if streaming:
            assert len(chunks) > 5  # audio arrived in pieces as the server sent them


def test_streaming_cancel_stops_the_call_at_the_server():
    with GoogleLoopbackServer(tts=TtsScript(chunk_delay=0.05)) as server:
        tts = make_tts(server, streaming=True)
        turn = Turn()
        got = []
        for chunk in tts.synthesize(TEXT * 3, turn):
            got.append(chunk)
            if len(got) == 2:
                turn.cancelled = True
        assert len(got) == 2
        (record,) = server.tts_requests
        assert record.done.wait(5)
        assert record.cancelled
        assert record.chunks_sent < len(tone_pcm(TEXT * 3, 8000)) // 1600


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "unary"])
def test_unreachable_server_is_a_provider_error(streaming):
    with GoogleLoopbackServer() as server:
        tts = make_tts(server, streaming)
        server.stop()
        with pytest.raises(ProviderError, match="ServiceUnavailable"):
            list(tts.synthesize(TEXT, NoTurn()))


def test_strip_wav_header():
    pcm = tone_pcm("abc", 8000)
    assert strip_wav_header(wav_header(len(pcm), 8000) + pcm) == pcm
    assert strip_wav_header(pcm) == pcm
