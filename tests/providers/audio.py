"""Synthetic test audio: voiced tone bursts and silence as L16 mono."""

from __future__ import annotations

import numpy as np


def voiced(ms: int, rate: int = 8000, amplitude: int = 3000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


def silence(ms: int, rate: int = 8000) -> bytes:
    return b"\0\0" * (rate * ms // 1000)


def frames(pcm: bytes, rate: int = 8000, ms: int = 20) -> list[bytes]:
    step = rate * ms // 1000 * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]
