"""WAV and raw L16 files for greetings: format, conversion, resampling, atomic writes."""

from __future__ import annotations

import stat
import wave
from pathlib import Path

import numpy as np
import pytest

from esl_agent.media import wavfile
from esl_agent.media.wavfile import WavError, read_raw, read_wav, resample, to_mono16, write_raw, write_wav


def tone(n: int, rate: int = 8000, freq: float = 440.0) -> bytes:
    t = np.arange(n) / rate
    return (np.sin(2 * np.pi * freq * t) * 10000).astype("<i2").tobytes()


def test_write_read_roundtrip_8k(tmp_path: Path) -> None:
    pcm = tone(8000)
    path = write_wav(tmp_path / "sub" / "a.wav", pcm)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (8000, 1, 2, 8000)
    audio = read_wav(path)
    assert audio.pcm == pcm and audio.sample_rate == 8000 and audio.duration == 1.0
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]  # no temp file left


def test_read_stereo_8bit_and_resample(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(1)
        w.setframerate(16000)
        w.writeframes(bytes([128 + 64, 128 - 64] * 1600 + [255, 255] * 1600))
    audio = read_wav(path, sample_rate=8000)
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    assert audio.sample_rate == 8000 and len(samples) == pytest.approx(1600, abs=2)
    assert abs(int(samples[100])) < 200  # +64 and -64 average to silence
    assert samples[-100] > 30000


def test_to_mono16_widths() -> None:
    s32 = np.array([1 << 30, -(1 << 30)], dtype="<i4").tobytes()
    assert np.frombuffer(to_mono16(s32, sample_width=4), "<i2").tolist() == [16384, -16384]
    with pytest.raises(WavError):
        to_mono16(b"\x00\x00\x00", sample_width=3)


@pytest.mark.parametrize(("src", "dst"), [(16000, 8000), (22050, 8000), (8000, 16000)])
def test_resample_length_and_tone(src: int, dst: int, monkeypatch: pytest.MonkeyPatch) -> None:
    pcm = tone(src, rate=src)
    for use_soxr in (True, False):
        if not use_soxr:
            monkeypatch.setitem(__import__("sys").modules, "soxr", None)
        out = np.frombuffer(resample(pcm, src, dst), dtype="<i2").astype(float)
        assert len(out) == pytest.approx(dst, abs=2)
        spectrum = np.abs(np.fft.rfft(out[: dst // 2 * 2]))
        peak_hz = np.argmax(spectrum) * dst / (dst // 2 * 2)
        assert peak_hz == pytest.approx(440, abs=5)


def test_raw_roundtrip_and_errors(tmp_path: Path) -> None:
    pcm = tone(160)
    assert read_raw(write_raw(tmp_path / "x.r8", pcm)) == pcm
    (tmp_path / "odd.r8").write_bytes(b"\x00")
    with pytest.raises(WavError):
        read_raw(tmp_path / "odd.r8")
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(WavError):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(ValueError):
        write_wav(tmp_path / "o.wav", b"\x00")
    assert wavfile.Audio(b"\x00\x00" * 4000, 8000).duration == 0.5
