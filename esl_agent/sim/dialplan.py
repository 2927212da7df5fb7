"""Dialplan applications and the playback engine of a simulated channel.

`DialplanApps` (mixed into `SimulatedCall`) runs the applications `sendmsg execute` queues, in
order from the park loop, with CHANNEL_EXECUTE / CHANNEL_EXECUTE_COMPLETE around each: answer,
set/export, park, sleep, hangup and playback (files, `silence_stream://`, `tone_stream://`,
`file_string://`) with PLAYBACK_START / PLAYBACK_STOP. `break_playback` is `uuid_break`
(and mod_audio_fork's killAudio): the playback stops with status `break`, `all` also drops the
queued applications. The media clock plays the current `Playback` frame by frame.
"""

from __future__ import annotations

import re
import uuid as uuidlib
import wave
from dataclasses import dataclass
from pathlib import Path

import gevent
import gevent.event
import numpy as np

from esl_agent.sim.caller import tone
from esl_agent.sim.channel import fill, timestamp_us
from esl_agent.sim.fork_client import resample


class PlaybackError(Exception):
    """The file could not be opened (FreeSWITCH answers FILE NOT FOUND)."""


def load_playback(target: str, rate: int) -> tuple[np.ndarray, str | None]:
    """Decode a playback target to int16 PCM at `rate` (PROTOCOLS 2.4). Returns (pcm, file type)."""
    if target.startswith("silence_stream://"):
        ms = int(target[len("silence_stream://"):].split(",")[0] or 0)
        if ms == 0:
            raise PlaybackError("silence_stream 0")
        ms = 3_600_000 if ms < 0 else ms
        return np.zeros(rate * ms // 1000, dtype="<i2"), None
    if target.startswith("tone_stream://"):
        return _tone_stream(target[len("tone_stream://"):], rate), "tone_stream"
    if target.startswith("file_string://"):
        parts = [load_playback(p, rate)[0] for p in target[len("file_string://"):].split("!")]
        return np.concatenate(parts) if parts else np.zeros(0, dtype="<i2"), None
    path = Path(target)
    if not path.is_file():
        raise PlaybackError(target)
    suffix = path.suffix.lower()
    if suffix in (".r8", ".raw", ".r16"):
        src_rate = 16000 if suffix == ".r16" else 8000
        data = path.read_bytes()
        pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
        return resample(pcm, src_rate, rate), None
    if suffix == ".wav":
        try:
            with wave.open(str(path), "rb") as w:
                if w.getsampwidth() != 2:
                    raise PlaybackError(f"{target}: not 16-bit")
                frames = w.readframes(w.getnframes())
                pcm = np.frombuffer(frames, dtype="<i2")
                if w.getnchannels() > 1:
                    pcm = pcm.reshape(-1, w.getnchannels())[:, 0].copy()
                return resample(pcm, w.getframerate(), rate), None
        except (wave.Error, EOFError) as exc:
            raise PlaybackError(str(exc)) from exc
    raise PlaybackError(f"{target}: unsupported format")


def _tone_stream(spec: str, rate: int) -> np.ndarray:
    """Minimal TGML: `%(on,off,f1[,f2...])` segments, optional `;loops=N`."""
    loops = 1
    m = re.search(r";loops=(-?\d+)", spec)
    if m:
        loops = int(m.group(1))
        loops = 60 if loops < 0 else max(loops, 1)
    out: list[np.ndarray] = []
    for seg in re.finditer(r"%\(([^)]*)\)", spec):
        nums = [float(x) for x in seg.group(1).split(",") if x.strip()]
        if len(nums) < 2:
            continue
        on, off, freqs = int(nums[0]), int(nums[1]), nums[2:]
        out.append(tone(freqs or [0.0], on, rate))
        if off > 0:
            out.append(np.zeros(rate * off // 1000, dtype="<i2"))
    if not out:
        raise PlaybackError(f"tone_stream://{spec}")
    one = np.concatenate(out)
    return np.tile(one, loops)


@dataclass
class App:
    """An application queued by `sendmsg execute` (or `uuid_broadcast`)."""

    name: str
    arg: str
    event_uuid: str
    loops: int = 1
    cancelled: bool = False


class Playback:
    """A playback (or a breakable wait) in progress: its PCM and how far it got."""

    def __init__(self, path: str, pcm: np.ndarray, key: str) -> None:
        self.path = path
        self.pcm = pcm
        self.pos = 0
        self.key = key
        self.break_requested = False
        self.broken = False
        self.started = False
        self.hangup = False
        self.done = gevent.event.Event()


class DialplanApps:
    """The park loop and the applications of a `SimulatedCall` (mixed into it)."""

    def _park_loop(self) -> None:
        if self.answer_state == "hangup":
            return
        self.fire_channel_event("CHANNEL_PARK", calling=("switch_ivr.c", "switch_ivr_park", 1002))
        while self._channel_ready():
            if not self._apps:
                self._apps_ready.clear()
                self._apps_ready.wait()
                continue
            app = self._apps.popleft()
            gevent.sleep(0.02)  # fact 5: CHANNEL_EXECUTE follows ~20 ms after +OK
            if app.cancelled or not self._channel_ready():
                continue
            self._execute(app)

    def _channel_ready(self) -> bool:
        return self.answer_state != "hangup" and self.transferred is None and not self._finished

    def _execute(self, app: App) -> None:
        self._current_app = app
        self.set_var("current_application_response", None)
        self.set_var("current_loop", "1")
        self.set_var("total_loops", str(app.loops))
        self.set_var("current_application", app.name)
        self.set_var("current_application_data", app.arg or None)
        app_headers = [("Application", app.name)]
        if app.arg:
            app_headers.append(("Application-Data", app.arg))
        self.fire_channel_event("CHANNEL_EXECUTE", extra=[*app_headers,
                                                          ("Application-UUID", app.event_uuid)])
        runner = getattr(self, f"_app_{app.name}", None)
        if runner is None:
            self.record("app_unknown", app=app.name)
            response = None
        else:
            response = runner(app.arg)
        if app.name == "hangup":
            response = None
        if response:
            self.set_var("current_application_response", response)
        self.fire_channel_event(
            "CHANNEL_EXECUTE_COMPLETE",
            calling=("switch_core_session.c", "switch_core_session_exec", 2967),
            extra=[*app_headers, ("Application-Response", response or "_none_"),
                   ("Application-UUID", app.event_uuid)],
        )
        self.set_var("current_loop", None)
        self.set_var("total_loops", None)
        self._current_app = None

    def _app_answer(self, arg: str) -> str | None:
        self.mark_answered()
        return None

    def _app_pre_answer(self, arg: str) -> str | None:
        return None

    def _app_set(self, arg: str) -> str | None:
        if "=" in arg:
            k, v = arg.split("=", 1)
            self.set_var(k, v)
        return None

    def _app_export(self, arg: str) -> str | None:
        return self._app_set(arg)

    def _app_park(self, arg: str) -> str | None:
        self._wait_breakable(None)
        return None

    def _app_sleep(self, arg: str) -> str | None:
        try:
            ms = int(arg.strip() or 0)
        except ValueError:
            ms = 0
        self._wait_breakable(ms / 1000)
        return None

    def _wait_breakable(self, seconds: float | None) -> None:
        pb = Playback("(wait)", np.zeros(0, dtype="<i2"), "wait")
        self._sleeper = pb
        pb.done.wait(seconds)
        self._sleeper = None

    def _app_hangup(self, arg: str) -> str | None:
        cause = arg.strip() or "NORMAL_CLEARING"
        self._hangup_core(cause, "send_bye", "hangup app", inside_app=True)
        return None

    def _app_playback(self, arg: str) -> str | None:
        target = arg.strip()
        params: list[tuple[str, str]] = []
        m = re.match(r"^\{([^}]*)\}(.*)$", target)
        if m:
            for pair in m.group(1).split(","):
                if "=" in pair:
                    k, v = pair.split("=", 1)
                    params.append((k, v))
            target = m.group(2)
        offset = 0
        if "@@" in target:
            target, off = target.rsplit("@@", 1)
            offset = int(off) if off.isdigit() else 0
        try:
            pcm, ftype = load_playback(target, self.sample_rate)
        except (PlaybackError, ValueError, OSError):
            self.record("playback_error", file=target)
            return "FILE NOT FOUND"
        type_hdr = [("Playback-File-Type", ftype)] if ftype else []
        self.fire_channel_event(
            "PLAYBACK_START", calling=("switch_ivr_play_say.c", "switch_ivr_play_file", 1640),
            extra=[*type_hdr, ("Playback-File-Path", target), *params])
        self.set_var("current_application", "playback")  # re-set while playing (capture order)
        pb = Playback(target, pcm, f"pb-{uuidlib.uuid4().hex[:8]}")
        pb.pos = min(offset, pcm.size)
        self.playback = pb
        pb.done.wait()
        self.playback = None
        total_ms = pcm.size * 1000 // self.sample_rate
        self.set_var("playback_last_offset_pos", str(pb.pos))
        self.set_var("playback_seconds", str(total_ms // 1000))
        self.set_var("playback_ms", str(total_ms))
        self.set_var("playback_samples", str(pcm.size))
        status = "break" if pb.broken else "done"
        self.fire_channel_event(
            "PLAYBACK_STOP", calling=("switch_ivr_play_say.c", "switch_ivr_play_file", 2050),
            extra=[*type_hdr, ("Playback-File-Path", target), ("Playback-Status", status),
                   *params])
        return "FILE PLAYED"

    def break_playback(self, reason: str, flush: bool = False) -> None:
        """uuid_break / killAudio: stop the current media; `flush` also drops queued apps."""
        self.record("break", reason=reason, flush=flush)
        if flush:
            for app in self._apps:
                app.cancelled = True
            self._apps.clear()
        pb = self.playback
        if pb is not None and not pb.done.is_set():
            pb.break_requested = True
        if self._sleeper is not None:
            self._sleeper.done.set()

    def mark_answered(self) -> None:
        if self.answer_state != "ringing":
            return
        self.answered_us = timestamp_us()
        self.media_up = True
        self.answer_state = "answered"
        self.call_state = "EARLY"
        for k, v in fill("variables_media", self._subst):
            self.set_var(k[len("variable_"):], v)
        self._subst["answer_us"] = self.answered_us
        for k, v in fill("variables_answer", self._subst):
            self.set_var(k[len("variable_"):], v)
        self.fire_channel_event(
            "CHANNEL_ANSWER",
            calling=("switch_channel.c", "switch_channel_perform_mark_answered", 3846))
        self.call_state = "ACTIVE"
        self.record("answered")
        self.caller.on_answer()
