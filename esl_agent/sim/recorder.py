"""What the simulated caller heard, with timestamps: a mono WAV plus a JSON timeline.

Times are seconds since the call was placed (monotonic clock). The audio track is written by the
call's media clock one frame at a time, so its sample index is the call time; silence where nothing
played. Every command, event, WebSocket frame summary, heard segment, transfer, hangup and state
event goes into `timeline` (a list of dicts with at least `t` and `kind`).
"""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np


class Recorder:
    """Timeline and caller-ear audio of one simulated call."""

    def __init__(self, sample_rate: int = 8000) -> None:
        self.sample_rate = sample_rate
        self.t0 = time.monotonic()
        self.timeline: list[dict[str, Any]] = []
        self._chunks: list[bytes] = []
        self._samples = 0
        self._open: dict[str, dict[str, Any]] = {}

    # ---------------------------------------------------------------- timeline
    def now(self) -> float:
        return round(time.monotonic() - self.t0, 6)

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        entry = {"t": self.now(), "kind": kind, **fields}
        self.timeline.append(entry)
        return entry

    # ---------------------------------------------------------------- audio
    def write_frame(self, t: float, pcm: bytes, source: str | None) -> None:
        """Append one frame of what the caller hears at call time `t` (pads any gap with silence)."""
        want = round(t * self.sample_rate)
        if want > self._samples:
            gap = want - self._samples
            self._chunks.append(b"\x00\x00" * gap)
            self._samples += gap
        self._chunks.append(pcm)
        self._samples += len(pcm) // 2

    @property
    def audio_seconds(self) -> float:
        return self._samples / self.sample_rate

    def begin_segment(self, key: str, source: str, kind: str, t: float, **extra: Any) -> None:
        """Mark the start of heard audio from `source` (a file path or `stream`)."""
        if key in self._open:
            return
        seg = self.add("audio", source=source, via=kind, start=round(t, 6), end=None,
                       interrupted=False, **extra)
        self._open[key] = seg

    def end_segment(self, key: str, t: float, interrupted: bool = False, **extra: Any) -> None:
        seg = self._open.pop(key, None)
        if seg is None:
            return
        seg["end"] = round(t, 6)
        seg["interrupted"] = interrupted
        seg.update(extra)

    def close_open_segments(self, t: float) -> None:
        for key in list(self._open):
            self.end_segment(key, t, interrupted=True)

    def pcm(self) -> bytes:
        """The caller-ear track as 16-bit little-endian mono PCM."""
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def samples(self) -> np.ndarray:
        return np.frombuffer(self.pcm(), dtype="<i2")

    # ---------------------------------------------------------------- queries
    def entries(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.timeline if e["kind"] == kind]

    def heard_segments(self) -> list[dict[str, Any]]:
        """Every audio segment the caller heard, in order (start, end, source, interrupted)."""
        return [e for e in self.timeline if e["kind"] == "audio"]

    def first_audio_time(self) -> float | None:
        """Call time at which the caller first heard something, or None."""
        segs = self.heard_segments()
        return min(s["start"] for s in segs) if segs else None

    def events_sent(self, name: str | None = None) -> list[dict[str, Any]]:
        """Events written to the controller (optionally one Event-Name or CUSTOM subclass)."""
        out = self.entries("event")
        if name:
            out = [e for e in out if name in (e.get("name"), e.get("subclass"))]
        return out

    def commands(self) -> list[str]:
        return [e["text"] for e in self.entries("command")]

    def ws_frames(self, direction: str | None = None) -> list[dict[str, Any]]:
        out = self.entries("ws")
        if direction:
            out = [e for e in out if e.get("dir") == direction]
        return out

    def state_events(self) -> list[dict[str, Any]]:
        return self.entries("state")

    # ---------------------------------------------------------------- output
    def save(self, wav_path: str | Path, json_path: str | Path) -> None:
        """Write the caller-ear WAV (mono, 16-bit, sample_rate) and the JSON timeline."""
        wav_path, json_path = Path(wav_path), Path(json_path)
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(wav_path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(self.pcm())
        doc = {
            "sample_rate": self.sample_rate,
            "audio_seconds": round(self.audio_seconds, 3),
            "first_audio_time": self.first_audio_time(),
            "timeline": self.timeline,
        }
        json_path.write_text(json.dumps(doc, indent=1, default=str))
