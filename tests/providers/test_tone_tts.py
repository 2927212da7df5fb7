"""The synthetic tone voice: deterministic, duration proportional to the text, capped."""

from __future__ import annotations

import numpy as np

from esl_agent.providers.base import NoTurn
from esl_agent.providers.tone_tts import ToneTextToSpeech, tone_pcm

from .helpers import Turn


def test_duration_is_proportional_to_the_text_and_capped():
    tts = ToneTextToSpeech(sample_rate=8000)
    short = b"".join(tts.synthesize("Hi there.", NoTurn()))
    assert len(short) == len("Hi there.") * 60 * 8 * 2
    wide = b"".join(ToneTextToSpeech(sample_rate=16000).synthesize("Hi there.", NoTurn()))
    assert len(wide) == 2 * len(short)
    long = b"".join(ToneTextToSpeech(sample_rate=8000, max_seconds=2.0)
                    .synthesize("word " * 200, NoTurn()))
    assert len(long) == 2 * 8000 * 2


def test_deterministic_quiet_and_shaped_per_word():
    a = tone_pcm("connect me to Anna", 8000)
    assert a == tone_pcm("connect me to Anna", 8000)
    samples = np.frombuffer(a, dtype="<i2").astype(float)
    assert 0 < np.abs(samples).max() <= 2000
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    voiced = rms > 300
    bursts = int(voiced[0]) + int(np.sum(voiced[1:] & ~voiced[:-1]))
    assert bursts == 4  # one burst per word, with a quiet gap between words


def test_stops_when_cancelled():
    turn = Turn()
    got = []
    for chunk in ToneTextToSpeech().synthesize("a fairly long sentence to speak", turn):
        got.append(chunk)
        turn.cancelled = True
    assert len(got) == 1
