"""Offline engines end to end: piper speaks, Whisper listens (both really loaded)."""

from __future__ import annotations

import re

import gevent
import gevent.event
import numpy as np
import pytest

from esl_agent.config import OfflineSttSettings, OfflineTtsSettings
from esl_agent.errors import ProviderError
from esl_agent.providers.base import NoTurn
from esl_agent.providers.offline_stt import OfflineSpeechToText
from esl_agent.providers.offline_tts import OfflineTextToSpeech, to_pcm

from .audio import frames, silence
from .helpers import Turn

pytestmark = pytest.mark.slow

DEMO = [
    "Hello, my name is Anna Berger.",
    "Could you please connect me to Markus in accounting?",
    "What are your opening hours on Friday?",
    "I have a question about my last invoice.",
    "Who is responsible for the sales team?",
    "Thank you, that's all, goodbye.",
]


@pytest.fixture(scope="module")
def tts():
    return OfflineTextToSpeech(OfflineTtsSettings(engine="piper"), sample_rate=8000)


@pytest.fixture(scope="module")
def stt():
    return OfflineSpeechToText(OfflineSttSettings(beam_size=5))


def speak(tts, text):
    return b"".join(tts.synthesize(text, NoTurn()))


def words(text):
    text = text.lower().replace("that's", "that is")
    return re.sub(r"[^a-z0-9' ]+", " ", text).split()


def wer(ref, hyp):
    r, h = words(ref), words(hyp)
    d = np.zeros((len(r) + 1, len(h) + 1), dtype=int)
    d[:, 0] = range(len(r) + 1)
    d[0, :] = range(len(h) + 1)
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1,
                          d[i - 1, j - 1] + (r[i - 1] != h[j - 1]))
    return d[len(r), len(h)], len(r)


class Listener:
    def __init__(self, stream):
        self.items = []
        self.error = None
        self.event = gevent.event.Event()
        self.greenlet = gevent.spawn(self._run, stream)

    def _run(self, stream):
        try:
            for t in stream:
                self.items.append(t)
                self.event.set()
        except Exception as exc:
            self.error = exc

    def finals(self):
        return [t.text for t in self.items if t.final]


def feed(stream, pcm):
    for frame in frames(pcm):
        stream.push(frame)
    gevent.sleep(0)


def test_piper_gives_8khz_audio(tts):
    pcm8 = speak(tts, DEMO[1])
    samples = np.frombuffer(pcm8, dtype="<i2")
    seconds = len(samples) / 8000
    assert 1.5 < seconds < 6.0  # a ~10-word sentence
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 500
    # the voice renders at 22.05 kHz: one second of it becomes exactly one second at 8 kHz
    second = np.sin(np.linspace(0, 2 * np.pi * 440, 22050, endpoint=False)).astype(np.float32)
    assert len(to_pcm(second, 22050, 8000)) == 8000 * 2


def test_piper_stops_when_cancelled(tts):
    turn = Turn()
    got = []
    for chunk in tts.synthesize("One sentence here. And a second one. And a third.", turn):
        got.append(chunk)
        turn.cancelled = True
    assert len(got) == 1 and len(got[0]) == 1600


def test_espeak_missing_is_a_clear_provider_error():
    tts = OfflineTextToSpeech(OfflineTtsSettings(engine="espeak"),
                              espeak_binary="espeak-ng-not-installed")
    with pytest.raises(ProviderError, match="espeak-ng-not-installed"):
        list(tts.synthesize("hello", NoTurn()))


def test_whisper_transcribes_piper_speech_with_interim_words(tts, stt):
    stream = stt.open_stream(sample_rate=8000, language="en-US")
    listener = Listener(stream)
    pcm = speak(tts, DEMO[1])
    cut = len(pcm) * 2 // 3 // 2 * 2
    feed(stream, silence(300) + pcm[:cut])  # caller still speaking: > 700 ms voiced so far
    assert listener.event.wait(30), "no interim transcript while the caller was speaking"
    interim = listener.items[0]
    assert not interim.final and "connect" in words(interim.text)
    feed(stream, pcm[cut:] + silence(800))
    stream.close()
    listener.greenlet.join(60)
    assert listener.error is None
    (final,) = listener.finals()
    assert {"connect", "accounting"} <= set(words(final))


def test_offline_round_trip_wer(tts, stt, capsys):
    stream = stt.open_stream(sample_rate=8000, language="en-US")
    listener = Listener(stream)
    for sentence in DEMO:
        feed(stream, speak(tts, sentence) + silence(700))
    stream.close()
    listener.greenlet.join(120)
    assert listener.error is None
    finals = listener.finals()
    assert len(finals) == len(DEMO)
    errors = total = 0
    for ref, hyp in zip(DEMO, finals):
        e, n = wer(ref, hyp)
        errors += e
        total += n
    rate = errors / total
    with capsys.disabled():
        print(f"\noffline piper->whisper WER over {len(DEMO)} utterances, {total} words: "
              f"{rate:.1%}")
    assert {"anna", "berger"} <= set(words(finals[0]))
    assert {"opening", "hours", "friday"} <= set(words(finals[2]))
    assert "goodbye" in words(finals[5])
    assert rate < 0.15
