"""Read and write the audio files FreeSWITCH plays: 16-bit mono WAV and raw L16 (.r8/.r16).

Small and pure: stdlib `wave` for the container, numpy for sample conversion, soxr for resampling
when it is installed (linear interpolation otherwise). All PCM here is signed 16-bit little-endian.
"""

from __future__ import annotations

import os
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Audio",
    "WavError",
    "read_raw",
    "read_wav",
    "resample",
    "to_mono16",
    "write_raw",
    "write_wav",
]


class WavError(ValueError):
    """The file is not a PCM WAV we can read."""


@dataclass(frozen=True)
class Audio:
    """Mono L16 PCM and its sample rate."""

    pcm: bytes
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / 2 / self.sample_rate


def read_wav(path: str | os.PathLike[str], sample_rate: int | None = None) -> Audio:
    """Read a PCM WAV (8/16/32-bit, any channel count) as mono L16, resampled if asked."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavError(f"{path}: not a PCM WAV file: {exc}") from None
    pcm = to_mono16(frames, channels=channels, sample_width=width)
    if sample_rate and sample_rate != rate:
        return Audio(resample(pcm, rate, sample_rate), sample_rate)
    return Audio(pcm, rate)


def write_wav(
    path: str | os.PathLike[str], pcm: bytes, sample_rate: int = 8000, *, atomic: bool = True
) -> Path:
    """Write mono L16 PCM as a WAV; atomically (temp file + rename) unless told otherwise."""
    if len(pcm) % 2:
        raise ValueError("L16 PCM must have an even number of bytes")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not atomic:
        _write_wav_file(target, pcm, sample_rate)
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        _write_wav_file(Path(tmp), pcm, sample_rate)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; FreeSWITCH often runs as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _write_wav_file(path: Path, pcm: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)


def read_raw(path: str | os.PathLike[str]) -> bytes:
    """Read a headerless L16 file (.r8 = 8 kHz, .r16 = 16 kHz, FreeSWITCH's naming)."""
    data = Path(path).read_bytes()
    if len(data) % 2:
        raise WavError(f"{path}: odd length, not L16 PCM")
    return data


def write_raw(path: str | os.PathLike[str], pcm: bytes) -> Path:
    """Write headerless L16 PCM atomically."""
    if len(pcm) % 2:
        raise ValueError("L16 PCM must have an even number of bytes")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pcm)
    os.replace(tmp, target)
    return target


def to_mono16(frames: bytes, *, channels: int = 1, sample_width: int = 2) -> bytes:
    """Convert interleaved PCM (8-bit unsigned, 16- or 32-bit signed) to mono L16."""
    if sample_width == 1:
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif sample_width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.int32)
    elif sample_width == 4:
        samples = np.frombuffer(frames, dtype="<i4").astype(np.int64) >> 16
    else:
        raise WavError(f"unsupported sample width {sample_width * 8} bits")
    if channels > 1:
        usable = len(samples) - len(samples) % channels
        samples = samples[:usable].reshape(-1, channels).mean(axis=1)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono L16 PCM; soxr (high quality) when installed, else linear interpolation."""
    if from_rate == to_rate or not pcm:
        return pcm
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError("sample rates must be positive")
    samples = np.frombuffer(pcm, dtype="<i2")
    try:
        import soxr
    except ImportError:
        soxr = None
    if soxr is not None:
        out = soxr.resample(samples, from_rate, to_rate)
        return np.asarray(out, dtype="<i2").tobytes()
    n_out = max(1, round(len(samples) * to_rate / from_rate))
    positions = np.arange(n_out) * (from_rate / to_rate)
    out = np.interp(positions, np.arange(len(samples)), samples.astype(np.float64))
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()
