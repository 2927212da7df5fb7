"""A deterministic synthetic "voice" (provider `tone`) for load tests and fast tests.

Audio lasts `ms_per_char` per character of text (capped), one quiet tone burst per word with a
smooth envelope and a short gap between words, at any sample rate. No engine is needed and the
same text always gives the same bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from esl_agent.providers.base import TtsCapabilities, TurnToken


def tone_pcm(text: str, sample_rate: int, ms_per_char: float = 60.0, max_seconds: float = 20.0,
             amplitude: int = 2000) -> bytes:
    """L16 PCM for `text`: duration = len(text) * ms_per_char (capped), a burst per word."""
    total = min(int(len(text) * ms_per_char * sample_rate / 1000), int(max_seconds * sample_rate))
    out = np.zeros(total, dtype=np.float64)
    words = text.split()
    if total == 0 or not words:
        return out.astype("<i2").tobytes()
    weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
    bounds = np.concatenate([[0], np.cumsum(weights) / weights.sum() * total]).astype(int)
    for word, start, end in zip(words, bounds[:-1], bounds[1:]):
        gap = min((end - start) // 5, sample_rate // 25)  # ~40 ms pause after each word
        n = max(end - start - gap, 0)
        if n == 0:
            continue
        freq = 180.0 + zlib.crc32(word.lower().encode()) % 160  # a voice-like pitch per word
        t = np.arange(n) / sample_rate
        envelope = np.sin(np.pi * np.arange(n) / n)
        out[start:start + n] = amplitude * envelope * np.sin(2 * np.pi * freq * t)
    return np.round(out).astype("<i2").tobytes()


class ToneTextToSpeech:
    """TextToSpeech producing `tone_pcm` audio in 100 ms chunks."""

    capabilities = TtsCapabilities(streaming=True, voices=("tone",))

    def __init__(self, sample_rate: int = 8000, ms_per_char: float = 60.0,
                 max_seconds: float = 20.0) -> None:
        self.name = "tone"
        self.voice = "tone"
        self.sample_rate = sample_rate
        self.ms_per_char = ms_per_char
        self.max_seconds = max_seconds

    def synthesize(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        """Yield the sentence's audio in 100 ms chunks; stop once the turn is cancelled."""
        pcm = tone_pcm(text, self.sample_rate, self.ms_per_char, self.max_seconds)
        step = self.sample_rate // 10 * 2
        for offset in range(0, len(pcm), step):
            if turn.cancelled:
                return
            yield pcm[offset:offset + step]
