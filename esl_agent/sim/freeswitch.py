"""A FreeSWITCH 1.10.12 simulator for the outbound event socket + mod_audio_fork.

`FreeSwitchSimulator.place_call()` plays what the dialplan line
`<action application="socket" data="HOST:PORT async full"/>` does for one inbound call: it opens a
TCP connection to the controller, sends nothing until `connect`, answers with the CHANNEL_DATA
block, then serves commands, runs `sendmsg` applications from a park loop, fires events, and runs
the audio fork's WebSocket. Everything that crosses the wire is built from the real captures
(`templates/channel.tpl`, `esl_codec`), see tests/fixtures/README.md for the numbered facts.

Each call runs in its own greenlets on gevent: the ESL reader (commands are handled in order, `api`
blocks like FreeSWITCH's listener thread), the park loop (queued applications, FIFO), and the
media clock (one tick per frame: what the caller hears goes to the recorder, what the caller says
goes to the fork).
"""

from __future__ import annotations

import email.utils
import itertools
import random
import re
import socket
import string
import struct
import tempfile
import time
import uuid as uuidlib
import wave
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import gevent
import gevent.event
import gevent.lock
import numpy as np

from esl_agent.logs import call_logger, redact_number
from esl_agent.sim import esl_codec
from esl_agent.sim.caller import CallerRuntime, CallerScript, tone
from esl_agent.sim.fork_client import ForkClient, audio_fork_api, resample
from esl_agent.sim.recorder import Recorder

ForkMode = Literal["stream", "play_audio"]

# myevents subscribes to exactly these (PROTOCOLS 1.5)
MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE",
    "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK", "DETECTED_SPEECH", "DTMF", "NOTALK", "TALK",
})

Q850 = {
    "NORMAL_CLEARING": 16, "ORIGINATOR_CANCEL": 487, "USER_BUSY": 17, "NO_ANSWER": 19,
    "NO_USER_RESPONSE": 18, "CALL_REJECTED": 21, "NORMAL_TEMPORARY_FAILURE": 41,
    "DESTINATION_OUT_OF_ORDER": 27, "UNALLOCATED_NUMBER": 1, "MANAGER_REQUEST": 16,
    "NORMAL_UNSPECIFIED": 31, "RECOVERY_ON_TIMER_EXPIRE": 102, "MEDIA_TIMEOUT": 0,
}


_SEQUENCE = itertools.count(1000)

# X- headers of the INVITE, as variable_sip_h_<name> (pass sip_headers={} for none)
DEFAULT_SIP_HEADERS = {"X-Sim-Trunk": "esl-agent-sim"}


# ============================================================================ template


def _load_template() -> dict[str, list[tuple[str, string.Template]]]:
    text = resources.files("esl_agent.sim").joinpath("templates/channel.tpl").read_text()
    sections: dict[str, list[tuple[str, string.Template]]] = {}
    current: list[tuple[str, string.Template]] | None = None
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        name, value = line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
        value = value.replace("\\\\", "\x00").replace("\\r", "\r").replace("\\n", "\n")
        value = value.replace("\x00", "\\")
        assert current is not None, "template line before any section"
        current.append((name, string.Template(value)))
    return sections


_TEMPLATE: dict[str, list[tuple[str, string.Template]]] | None = None


def template() -> dict[str, list[tuple[str, string.Template]]]:
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = _load_template()
    return _TEMPLATE


def _fill(section: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, t.safe_substitute(values)) for k, t in template()[section]]


# ============================================================================ playback sources


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


# ============================================================================ public types


@dataclass
class Faults:
    """Fault switches for tests (all off by default)."""

    fork_connect_fails: bool = False
    api_errors: dict[str, str] = field(default_factory=dict)  # api command -> body (e.g. "-ERR x")
    drop_after_command: str | None = None  # drop TCP right after replying to this command name
    drop_at: float | None = None  # drop TCP abruptly this many seconds after `connect`
    garbage_at: float | None = None  # write a garbage block at this time after `connect`
    truncated_at: float | None = None  # write a frame whose body never completes, then close
    split_writes: bool = False  # write every frame in random small chunks (fact 3)


@dataclass
class _App:
    name: str
    arg: str
    event_uuid: str
    loops: int = 1
    cancelled: bool = False


class _Playback:
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


# ============================================================================ the call


class SimulatedCall:
    """One simulated inbound call controlled by the controller's outbound ESL server."""

    def __init__(
        self,
        sim: FreeSwitchSimulator,
        *,
        caller_number: str,
        caller_name: str,
        destination: str,
        script: CallerScript | None,
        sip_headers: dict[str, str] | None,
        faults: Faults,
    ) -> None:
        self.sim = sim
        self.uuid = str(uuidlib.uuid4())
        self.caller_number = caller_number
        self.caller_name = caller_name or caller_number
        self.destination = destination
        self.faults = faults
        self.sample_rate = sim.sample_rate
        self.frame_samples = sim.sample_rate * sim.frame_ms // 1000
        self.recording = Recorder(sim.sample_rate)
        self.commands: list[str] = []
        self.log = call_logger(self.uuid, "esl_agent.sim.call")
        self.caller = CallerRuntime(script or CallerScript(), self)

        # channel state
        self.created_us = _now_us()
        self.answered_us = 0
        self.hangup_us = 0
        self.channel_state = "CS_EXECUTE"
        self.state_number = 4
        self.call_state = "RINGING"
        self.answer_state = "ringing"
        self.hangup_cause: str | None = None
        self.media_up = False
        self.transferred: dict[str, str] | None = None
        self._subst = self._call_values()
        self.vars: OrderedDict[str, str] = OrderedDict()
        for k, v in _fill("variables", self._subst):
            self.vars[k[len("variable_"):]] = v
        headers = DEFAULT_SIP_HEADERS if sip_headers is None else sip_headers
        for name, value in headers.items():
            self._insert_sip_header(name, value)
        if sim.send_silence_when_idle:  # fact 18: the dialplan sets it before `socket`
            self.set_var("send_silence_when_idle", "-1")
        # what the `socket` application itself set before connecting
        esl_host, esl_port = sim.esl_address
        self.set_var("current_application_data", f"{esl_host}:{esl_port} async full")
        self.set_var("current_application", "socket")
        self.set_var("socket_host", esl_host)

        # socket / listener state
        self._sock: socket.socket | None = None
        self.partial_writes = 0
        self._wlock = gevent.lock.Semaphore()
        self.connected = False  # `connect` received
        self.session_open = False
        self.myevents = False
        self.event_format = "plain"
        self.event_names: set[str] = set()
        self.custom_subclasses: set[str] = set()
        self.all_events = False
        self.filters: list[tuple[str, str]] = []
        self.linger: int | None = None

        # apps / media
        self._apps: deque[_App] = deque()
        self._apps_ready = gevent.event.Event()
        self._current_app: _App | None = None
        self._sleeper: _Playback | None = None
        self.playback: _Playback | None = None
        self.forks: dict[str, ForkClient] = {}
        self._temp_files: list[str] = []
        self._stream_key: str | None = None
        self._warned_idle = False
        self._greenlets: list[gevent.Greenlet] = []
        self._ended = gevent.event.Event()  # ESL session over
        self._hung_up = gevent.event.Event()
        self._done = gevent.event.Event()  # ended + hung up + cleaned up
        self._finished = False
        self._hangup_lock = gevent.lock.Semaphore()

    # ------------------------------------------------------------------ public API
    @property
    def timeline(self) -> list[dict[str, Any]]:
        return self.recording.timeline

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the event-socket session has ended (and the call is cleaned up: every
        greenlet of the call stopped, temp files gone); True if that happened within `timeout`."""
        return self._done.wait(timeout)

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        g = gevent.spawn(fn, *args)
        self._greenlets.append(g)
        return g

    def _spawn_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        g = gevent.spawn_later(seconds, fn, *args)
        self._greenlets.append(g)
        return g

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """The caller hangs up now (ORIGINATOR_CANCEL before answer is the usual cause)."""
        self._spawn(self._do_hangup, cause, "recv_bye", "caller")

    def save(self, wav_path: str | Path, json_path: str | Path) -> None:
        self.recording.save(wav_path, json_path)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def get_var(self, name: str) -> str | None:
        return self.vars.get(name)

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        return self.recording.add(kind, **fields)

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        self._greenlets.append(gevent.spawn(self._run))

    def _run(self) -> None:
        host, port = self.sim.esl_address
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError as exc:
            self.record("socket_error", error=str(exc))
            self.log.warning("socket app could not connect to %s:%s", host, port)
            self._ended.set()
            self._hung_up.set()
            self._maybe_finish()
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self.session_open = True
        self.record("tcp_connect", esl=f"{host}:{port}", caller=redact_number(self.caller_number))
        self._greenlets.append(gevent.spawn(self._media_clock))
        self._greenlets.append(gevent.spawn(self.caller.run))
        self._reader()

    # ------------------------------------------------------------------ values
    def _call_values(self) -> dict[str, Any]:
        created = self.created_us / 1e6
        host = "192.0.2.10"
        return {
            "uuid": self.uuid,
            "core_uuid": self.sim.core_uuid,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "destination": self.destination,
            "channel_name": f"sofia/external/{self.caller_number}@{host}:5060",
            "from_uri": f"{self.caller_number}@{host}:5060",
            "to_uri": f"{self.destination}@192.0.2.2:5080",
            "network_addr": host,
            "created_us": self.created_us,
            "created_stamp": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
            "created_epoch": int(created),
            "sip_call_id": f"{uuidlib.uuid4().hex[:16]}@{host}",
            "from_tag": uuidlib.uuid4().hex[:12],
            "to_tag": "".join(random.choices(string.ascii_letters + string.digits, k=13)),
            "via_branch": "z9hG4bK" + uuidlib.uuid4().hex[:12],
            "sip_subject": "esl-agent simulator",
            "session_id": next(self.sim.session_ids),
            "rfc2822_date": email.utils.formatdate(created, localtime=True),
            "ssrc": random.randint(1, 2**32 - 1),
            "local_media_port": random.randrange(16384, 32768, 2),
        }

    def _insert_sip_header(self, name: str, value: str) -> None:
        items = list(self.vars.items())
        at = next((i for i, (k, _) in enumerate(items) if k == "sip_via_port"), len(items) - 1)
        items.insert(at + 1, (f"sip_h_{name}", value))
        self.vars = OrderedDict(items)

    def set_var(self, name: str, value: str | None) -> None:
        """switch_channel_set_variable: delete then append at the end (None/empty unsets)."""
        self.vars.pop(name, None)
        if value is not None and value != "":
            self.vars[name] = value

    # ------------------------------------------------------------------ events
    def build_event(
        self,
        name: str,
        *,
        subclass: str | None = None,
        calling: tuple[str, str, int] = ("switch_core_session.c", "switch_core_session_exec", 2944),
        variables: bool = True,
        profile: bool = False,
        extra: Iterable[tuple[str, str]] = (),
        hangup_first: bool = False,
    ) -> list[tuple[str, str]]:
        """Headers of a channel event in FreeSWITCH's order (event base, basic, caller, vars)."""
        now_us = _now_us()
        now_s = now_us / 1e6
        values = dict(self._subst)
        values.update(
            event_name=name,
            date_local=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now_s)),
            date_gmt=email.utils.formatdate(now_s, usegmt=True),
            timestamp_us=now_us,
            calling_file=calling[0],
            calling_function=calling[1],
            calling_line=calling[2],
            sequence=next(_SEQUENCE),
            channel_state=self.channel_state,
            call_state=self.call_state,
            state_number=self.state_number,
            answer_state=self.answer_state,
            answered_us=self.answered_us,
            progress_media_us=self.answered_us,
            hangup_us=self.hangup_us if self.channel_state == "CS_REPORTING" else 0,
        )
        headers: list[tuple[str, str]] = []
        if subclass:
            headers.append(("Event-Subclass", subclass))
        headers += _fill("event_base", values)
        if hangup_first and self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        if profile:
            headers += _fill("channel_profile", values)
        headers += _fill("basic", values)
        if self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        if self.media_up:
            headers += _fill("codecs", values)
        headers += _fill("caller", values)
        if variables:
            headers += [(f"variable_{k}", v) for k, v in self.vars.items()]
        headers += list(extra)
        return headers

    def base_headers(self, name: str, calling: tuple[str, str, int]) -> list[tuple[str, str]]:
        """Event-Name .. Event-Sequence only (events without channel data)."""
        now_us = _now_us()
        values = dict(self._subst)
        values.update(
            event_name=name,
            date_local=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now_us / 1e6)),
            date_gmt=email.utils.formatdate(now_us / 1e6, usegmt=True), timestamp_us=now_us,
            calling_file=calling[0], calling_function=calling[1], calling_line=calling[2],
            sequence=next(_SEQUENCE))
        return _fill("event_base", values)

    def fire(self, name: str, headers: list[tuple[str, str]], body: str | None = None,
             subclass: str | None = None) -> None:
        """Fire an event: record it and deliver it if this socket is subscribed."""
        delivered = self._wants(name, subclass, headers)
        self.record("event", name=name, subclass=subclass, delivered=delivered,
                    **_event_summary(headers, body))
        if delivered:
            self._write(esl_codec.event_frame(headers, body, self.event_format))

    def fire_channel_event(self, name: str, **kw: Any) -> None:
        body = kw.pop("body", None)
        self.fire(name, self.build_event(name, **kw), body)

    def fire_custom(self, subclass: str, body: str | None = None) -> None:
        """CUSTOM event from mod_audio_fork's responseHandler (fact 4: subclass first)."""
        if self._finished:
            return
        headers = self.build_event(
            "CUSTOM", subclass=subclass, calling=("mod_audio_fork.c", "responseHandler", 22))
        self.fire("CUSTOM", headers, body, subclass=subclass)

    def _wants(self, name: str, subclass: str | None, headers: list[tuple[str, str]]) -> bool:
        if not self.session_open:
            return False
        if name == "CUSTOM":
            ok = self.all_events or (subclass in self.custom_subclasses) or (
                "CUSTOM" in self.event_names and not self.custom_subclasses)
        else:
            ok = self.all_events or name in self.event_names or (
                self.myevents and name in MYEVENTS)
        if not ok:
            return False
        hmap = {k.lower(): v for k, v in headers}
        if self.myevents and hmap.get("unique-id") != self.uuid and \
                hmap.get("job-owner-uuid") != self.uuid:
            return False
        if self.filters:
            positive = False
            has_positive = False
            for fname, fval in self.filters:
                have = hmap.get(fname.lower())
                if fval.startswith("-"):
                    if have is not None and have.lower() == fval[1:].lower():
                        return False
                    continue
                has_positive = True
                if have is None:
                    continue
                if fval.startswith("/") and fval.endswith("/") and len(fval) > 1:
                    positive = positive or re.search(fval[1:-1], have) is not None
                elif have.lower() == fval.lower():
                    positive = True
            if has_positive and not positive:
                return False
        return True

    # ------------------------------------------------------------------ socket I/O
    def _write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        with self._wlock:
            try:
                if self.faults.split_writes and len(data) > 8:
                    pos = 0
                    while pos < len(data):
                        step = random.randint(1, max(2, len(data) // 3))
                        sock.sendall(data[pos:pos + step])
                        self.partial_writes += 1
                        pos += step
                        gevent.sleep(0.001)
                else:
                    sock.sendall(data)
            except OSError:
                self._session_closed("write failed")

    def _reader(self) -> None:
        reader = esl_codec.CommandReader()
        if self.faults.drop_at is not None:
            self._greenlets.append(gevent.spawn_later(self.faults.drop_at, self._drop, "drop_at"))
        if self.faults.garbage_at is not None:
            self._greenlets.append(gevent.spawn_later(self.faults.garbage_at, self._garbage))
        if self.faults.truncated_at is not None:
            self._greenlets.append(gevent.spawn_later(self.faults.truncated_at, self._truncated))
        while self.session_open and self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._session_closed("controller closed the socket")
                return
            for cmd in reader.feed(data):
                if not self.session_open:
                    return
                self._handle(cmd)

    def _drop(self, why: str) -> None:
        self.record("fault", what=why)
        sock = self._sock
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self._session_closed(f"fault: {why}")

    def _garbage(self) -> None:
        self.record("fault", what="garbage")
        self._write(b"\x00\xffgarbage that is no frame\nno-colon-here\n\xfe\xfd\n\n")

    def _truncated(self) -> None:
        self.record("fault", what="truncated")
        frame = esl_codec.event_frame(self.build_event("CHANNEL_EXECUTE"))
        self._write(frame[: len(frame) // 2])
        self._session_closed("fault: truncated frame")

    def _session_closed(self, why: str) -> None:
        """The listener is gone: the socket app returns; a live call then hangs up."""
        if not self.session_open and self._sock is None:
            return
        self.session_open = False
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self.record("esl_closed", why=why)
        if self.answer_state != "hangup":
            # "has executed the last dialplan instruction": the core hangs up the channel
            self._spawn(self._do_hangup, "NORMAL_CLEARING", "send_bye", "dialplan end")
        self._ended.set()
        self._maybe_finish()

    # ------------------------------------------------------------------ commands
    def _reply(self, text: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        self._write(esl_codec.command_reply(text, list(extra)))

    def _handle(self, cmd: esl_codec.Command) -> None:
        text = cmd.text()
        self.commands.append(text)
        self.record("command", text=text)
        name = cmd.name
        handler = getattr(self, f"_cmd_{name}", None)
        if name == "...":
            handler = self._cmd_exit
        if handler is None:
            self._reply("-ERR command not found")
        else:
            handler(cmd)
        if self.faults.drop_after_command and self.faults.drop_after_command in (
                name, cmd.arg.split(" ", 1)[0]):
            self._drop(f"after {self.faults.drop_after_command}")

    def _cmd_connect(self, cmd: esl_codec.Command) -> None:
        first = not self.connected
        self.connected = True
        headers = self.build_event(
            "CHANNEL_DATA", calling=("mod_event_socket.c", "parse_command", 2021), profile=True)
        self._write(esl_codec.connect_reply(headers))
        self.record("connect_reply", headers=len(headers) + 4)
        if first:  # the socket app parks the channel once `connect` arrived (async mode)
            self._greenlets.append(gevent.spawn_later(0.001, self._park_loop))

    def _cmd_myevents(self, cmd: esl_codec.Command) -> None:
        if self.myevents:
            self._reply("-ERR aready enabled.")
            return
        # `myevents [<uuid>] [plain|json|xml]` (outbound: the uuid is optional)
        parts = [p.lower() for p in cmd.arg.split() if len(p) != 36]
        fmt = parts[0] if parts else "plain"
        self.event_format = fmt if fmt in ("plain", "json") else "plain"
        self.myevents = True
        self._reply("+OK Events Enabled")

    def _cmd_event(self, cmd: esl_codec.Command) -> None:
        tokens = cmd.arg.split()
        if not tokens:
            self._reply("-ERR no keywords supplied")
            return
        fmt = "plain"
        if tokens[0].lower() in ("plain", "json", "xml"):
            fmt = tokens.pop(0).lower()
            fmt = "plain" if fmt == "xml" else fmt  # xml is not simulated
        custom = False
        for tok in tokens:
            if custom:
                self.custom_subclasses.add(tok)
            elif tok.upper() == "CUSTOM":
                custom = True
                self.event_names.add("CUSTOM")
            elif tok.upper() == "ALL":
                self.all_events = True
            else:
                self.event_names.add(tok.upper())
        self.event_format = fmt
        self._reply(f"+OK event listener enabled {fmt}")

    def _cmd_nixevent(self, cmd: esl_codec.Command) -> None:
        for tok in cmd.arg.split():
            self.event_names.discard(tok.upper())
            self.custom_subclasses.discard(tok)
        self._reply("+OK events nixed")

    def _cmd_noevents(self, cmd: esl_codec.Command) -> None:
        self.event_names.clear()
        self.custom_subclasses.clear()
        self.all_events = False
        self.myevents = False
        self._reply("+OK no longer listening for events")

    def _cmd_filter(self, cmd: esl_codec.Command) -> None:
        parts = cmd.arg.split(" ", 1)
        if parts[0].lower() == "delete":
            rest = parts[1].split(" ", 1) if len(parts) > 1 else []
            if rest and rest[0].lower() == "all":
                self.filters.clear()
                self._reply("+OK filter deleted. [all]")
                return
            if rest:
                key = rest[0]
                val = rest[1] if len(rest) > 1 else None
                self.filters = [f for f in self.filters
                                if not (f[0] == key and (val is None or f[1] == val))]
                self._reply(f"+OK filter deleted. [{key}]=[{val or ''}]")
                return
            self._reply("-ERR invalid syntax")
            return
        if len(parts) < 2:
            self._reply("-ERR invalid syntax")
            return
        header, value = parts[0], parts[1]
        self.filters.append((header, value))
        self._reply(f"+OK filter added. [{header}]=[{value}]")

    def _cmd_linger(self, cmd: esl_codec.Command) -> None:
        arg = cmd.arg.strip()
        if arg and arg.lstrip("-").isdigit() and int(arg) > 0:
            self.linger = int(arg)
            self._reply(f"+OK will linger {int(arg)} seconds")
        else:
            self.linger = -1
            self._reply("+OK will linger")

    def _cmd_nolinger(self, cmd: esl_codec.Command) -> None:
        self.linger = None
        self._reply("+OK will not linger")

    def _cmd_resume(self, cmd: esl_codec.Command) -> None:
        self._reply("+OK")

    def _cmd_divert_events(self, cmd: esl_codec.Command) -> None:
        on = cmd.arg.strip().lower() == "on"
        self._reply("+OK events diverted" if on else "+OK events not diverted")

    def _cmd_getvar(self, cmd: esl_codec.Command) -> None:
        value = self.vars.get(cmd.arg.strip())
        self._reply(value if value else "-ERR command not found")

    def _cmd_exit(self, cmd: esl_codec.Command) -> None:
        self._reply("+OK bye")
        self._write(esl_codec.disconnect_notice(self.uuid))
        self._session_closed("exit")

    def _cmd_sendevent(self, cmd: esl_codec.Command) -> None:
        ename = (cmd.arg.strip() or "CUSTOM").upper()
        given = list(cmd.headers)
        subclass = next((v for k, v in given if k.lower() == "event-subclass"), None)
        ev_uuid = next((v for k, v in given if k.lower() == "event-uuid"), None)
        ev_uuid = ev_uuid or str(uuidlib.uuid4())
        headers: list[tuple[str, str]] = []
        if subclass:
            headers.append(("Event-Subclass", subclass))
        headers += self.base_headers(ename, ("mod_event_socket.c", "parse_command", 2306))
        headers += [(k, v) for k, v in given
                    if k.lower() not in ("event-subclass", "event-name", "content-length")]
        if not any(k.lower() == "event-uuid" for k, _ in given):
            headers.append(("Event-UUID", ev_uuid))
        body = cmd.body.decode("utf-8", errors="replace") if cmd.body else None
        self._reply(f"+OK {ev_uuid}")
        self.record("state", event=ename, subclass=subclass,
                    headers={k: v for k, v in given}, body=body)
        self.fire(ename, headers, body, subclass=subclass)

    def _cmd_sendmsg(self, cmd: esl_codec.Command) -> None:
        target = cmd.arg.strip()
        if target and target != self.uuid:
            other = self.sim.calls_by_uuid.get(target)
            if other is None:
                self._reply(f"-ERR invalid session id [{target}]")
                return
            other._queue_msg(cmd)
            self._reply("+OK")
            return
        self._reply("+OK")
        self._queue_msg(cmd)

    def _queue_msg(self, cmd: esl_codec.Command) -> None:
        command = (cmd.header("call-command") or "").lower()
        if command == "execute":
            app = cmd.header("execute-app-name") or ""
            arg = cmd.header("execute-app-arg") or ""
            if cmd.body and (cmd.header("content-type") or "").lower() == "text/plain":
                arg = cmd.body.decode("utf-8", errors="replace")
            loops = int(cmd.header("loops") or 1)
            ev_uuid = cmd.header("Event-UUID") or str(uuidlib.uuid4())
            self._apps.append(_App(app, arg, ev_uuid, loops))
            self._apps_ready.set()
        elif command == "hangup":
            cause = cmd.header("hangup-cause") or "NORMAL_CLEARING"
            self._spawn_later(0.02, self._do_hangup, cause, "send_bye", "sendmsg hangup")
        else:
            self.record("ignored_sendmsg", command=command)

    # ------------------------------------------------------------------ api
    def _cmd_bgapi(self, cmd: esl_codec.Command) -> None:
        job = cmd.header("Job-UUID") or str(uuidlib.uuid4())
        self._reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)])
        line = cmd.arg

        def run() -> None:
            out = self._api_output(line)
            parts = line.split(" ", 1)
            base = self.base_headers("BACKGROUND_JOB", ("mod_event_socket.c", "api_exec", 1608))
            base += [("Job-UUID", job), ("Job-Owner-UUID", self.uuid),
                     ("Job-Command", parts[0]), ("Job-Command-Arg", parts[1] if len(parts) > 1 else "")]
            self.fire("BACKGROUND_JOB", base, out)

        self._spawn(run)

    def _cmd_api(self, cmd: esl_codec.Command) -> None:
        out = self._api_output(cmd.arg)
        self._write(esl_codec.api_response(out))
        self.record("api_response", body=out.strip()[:200])

    def _api_output(self, line: str) -> str:
        parts = line.strip().split(" ", 1)
        name = parts[0]
        arg = parts[1] if len(parts) > 1 else ""
        if name in self.faults.api_errors:
            return self.faults.api_errors[name]
        fn = getattr(self, f"_api_{name}", None)
        if fn is None:
            return f"-ERR {name} Command not found!\n"
        return fn(arg)

    def _target(self, arg: str) -> tuple[SimulatedCall | None, list[str]]:
        tokens = arg.split(" ")
        if not tokens or not tokens[0]:
            return None, tokens
        call = self.sim.calls_by_uuid.get(tokens[0])
        if call is None or call._finished or call.answer_state == "hangup":
            return None, tokens
        return call, tokens

    def _api_uuid_exists(self, arg: str) -> str:
        call, _ = self._target(arg.strip())
        return "true" if call else "false"

    def _api_uuid_break(self, arg: str) -> str:
        call, tokens = self._target(arg)
        if call is None:
            return "-ERR No such channel!\n"
        flush = len(tokens) > 1 and tokens[1] == "all"
        call.break_playback(reason="uuid_break", flush=flush)
        return "+OK\n"

    def _api_uuid_kill(self, arg: str) -> str:
        call, tokens = self._target(arg)
        if call is None:
            return "-ERR No such channel!\n"
        cause = tokens[1] if len(tokens) > 1 and tokens[1] else "NORMAL_CLEARING"
        call._spawn(call._do_hangup, cause, "send_bye", "uuid_kill")
        return "+OK\n"

    def _api_uuid_setvar(self, arg: str) -> str:
        tokens = arg.split(" ", 2)
        if len(tokens) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        call.set_var(tokens[1], tokens[2] if len(tokens) > 2 else None)
        call.record("setvar", name=tokens[1], value=tokens[2] if len(tokens) > 2 else None)
        return "+OK\n"

    def _api_uuid_setvar_multi(self, arg: str) -> str:
        tokens = arg.split(" ", 1)
        if len(tokens) < 2:
            return "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        for pair in tokens[1].split(";"):
            if "=" in pair:
                k, v = pair.split("=", 1)
                call.set_var(k, v)
                call.record("setvar", name=k, value=v)
        return "+OK\n"

    def _api_uuid_getvar(self, arg: str) -> str:
        tokens = arg.split(" ")
        if len(tokens) < 2:
            return "-USAGE: <uuid> <var>\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        return call.vars.get(tokens[1]) or "_undef_"

    def _api_uuid_dump(self, arg: str) -> str:
        tokens = arg.split(" ")
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        headers = call.build_event(
            "CHANNEL_DATA", calling=("mod_commands.c", "uuid_dump_function", 5900), profile=True)
        if len(tokens) > 1 and tokens[1] == "json":
            return esl_codec.serialize_json(headers).decode()
        return "".join(f"{k}: {v}\n" for k, v in headers)

    def _api_uuid_transfer(self, arg: str) -> str:
        tokens = [t for t in arg.split(" ") if t]
        if len(tokens) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        rest = [t for t in tokens[1:] if t not in ("-bleg", "-both")]
        dest = rest[0]
        dialplan = rest[1] if len(rest) > 1 else "XML"
        context = rest[2] if len(rest) > 2 else "public"
        call._spawn(call._transfer, dest, dialplan, context)
        return "+OK\n"

    def _api_uuid_broadcast(self, arg: str) -> str:
        tokens = arg.split(" ")
        if len(tokens) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR invalid uuid\n"
        path = tokens[1]
        app, app_arg = ("playback", path)
        if "::" in path:
            app, app_arg = path.split("::", 1)
        call._apps.append(_App(app, app_arg, str(uuidlib.uuid4())))
        call._apps_ready.set()
        return "+OK Message sent\n"

    def _api_uuid_audio_fork(self, arg: str) -> str:
        return audio_fork_api(self.sim, arg)

    # ------------------------------------------------------------------ park loop / apps
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

    def _execute(self, app: _App) -> None:
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
        pb = _Playback("(wait)", np.zeros(0, dtype="<i2"), "wait")
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
        pb = _Playback(target, pcm, f"pb-{uuidlib.uuid4().hex[:8]}")
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

    # ------------------------------------------------------------------ answer / hangup
    def mark_answered(self) -> None:
        if self.answer_state != "ringing":
            return
        self.answered_us = _now_us()
        self.media_up = True
        self.answer_state = "answered"
        self.call_state = "EARLY"
        for k, v in _fill("variables_media", self._subst):
            self.set_var(k[len("variable_"):], v)
        self._subst["answer_us"] = self.answered_us
        for k, v in _fill("variables_answer", self._subst):
            self.set_var(k[len("variable_"):], v)
        self.fire_channel_event(
            "CHANNEL_ANSWER",
            calling=("switch_channel.c", "switch_channel_perform_mark_answered", 3846))
        self.call_state = "ACTIVE"
        self.record("answered")
        self.caller.on_answer()

    def send_dtmf(self, digit: str, duration: int = 2000) -> None:
        """The caller presses a key (RFC 2833): a DTMF event (no variables)."""
        if self.answer_state == "hangup":
            return
        self.fire_channel_event(
            "DTMF", calling=("switch_channel.c", "switch_channel_dequeue_dtmf", 548),
            variables=False,
            extra=[("DTMF-Digit", digit), ("DTMF-Duration", str(duration)),
                   ("DTMF-Source", "RTP")])

    def _transfer(self, dest: str, dialplan: str, context: str) -> None:
        self.transferred = {"destination": dest, "dialplan": dialplan, "context": context}
        self.record("transfer", destination=dest, dialplan=dialplan, context=context)
        self.break_playback("transfer", flush=True)
        self._apps_ready.set()
        gevent.sleep(0.02)
        self.fire_channel_event("CHANNEL_UNPARK",
                                calling=("switch_ivr.c", "switch_ivr_park", 1213))
        self._socket_app_complete()
        # the simulated destination takes the call and finishes it a little later
        gevent.sleep(self.sim.transfer_hold_s)
        self._do_hangup("NORMAL_CLEARING", "send_bye", f"transfer destination {dest} finished")

    def _socket_app_complete(self) -> None:
        addr = f"{self.sim.esl_address[0]}:{self.sim.esl_address[1]} async full"
        self.fire_channel_event(
            "CHANNEL_EXECUTE_COMPLETE",
            calling=("switch_core_session.c", "switch_core_session_exec", 2967),
            extra=[("Application", "socket"), ("Application-Data", addr),
                   ("Application-Response", "_none_"),
                   ("Application-UUID", self.sim.socket_app_uuid(self))])

    def _do_hangup(self, cause: str, disposition: str, who: str) -> None:
        self._hangup_core(cause, disposition, who, inside_app=False)

    def _hangup_core(self, cause: str, disposition: str, who: str, inside_app: bool) -> None:
        """Fact 8: HANGUP, (app completions), UNPARK, socket complete, STATE x2, HANGUP_COMPLETE."""
        with self._hangup_lock:
            if self.answer_state == "hangup":
                return
            was_parked = self.transferred is None
            self.hangup_cause = cause
            self.answer_state = "hangup"
            self.state_number = 10
            self.hangup_us = _now_us()
            self.record("hangup", cause=cause, by=who)
            self.fire_channel_event(
                "CHANNEL_HANGUP",
                calling=("switch_channel.c", "switch_channel_perform_hangup", 3445))
            self._apps_ready.set()
            for app in self._apps:
                app.cancelled = True
            pb = self.playback
            if pb is not None:
                pb.break_requested = True
                pb.hangup = True
            if self._sleeper is not None:
                self._sleeper.done.set()
        if not inside_app:
            # a running application completes first (its EXECUTE_COMPLETE precedes UNPARK)
            deadline = time.monotonic() + 1.0
            while self._current_app is not None and time.monotonic() < deadline:
                gevent.sleep(0.005)
        else:
            self._spawn(self._hangup_tail, was_parked, disposition)
            return
        self._hangup_tail(was_parked, disposition)

    def _hangup_tail(self, was_parked: bool, disposition: str) -> None:
        if was_parked:
            if self._current_app is not None:
                deadline = time.monotonic() + 1.0
                while self._current_app is not None and time.monotonic() < deadline:
                    gevent.sleep(0.001)
            if self.connected:
                self.fire_channel_event("CHANNEL_UNPARK",
                                        calling=("switch_ivr.c", "switch_ivr_park", 1213))
            self._socket_app_complete()
        self.channel_state = "CS_HANGUP"
        self.fire_channel_event(
            "CHANNEL_STATE", variables=False,
            calling=("switch_channel.c", "switch_channel_perform_set_running_state", 2408))
        # the hangup state handler removes the media bugs: the fork closes normally (1000)
        for fork in list(self.forks.values()):
            fork.shutdown()
        next(_SEQUENCE)  # CHANNEL_CALLSTATE (not delivered by myevents)
        self.channel_state = "CS_REPORTING"
        self.call_state = "HANGUP"
        self.state_number = 11
        self.fire_channel_event(
            "CHANNEL_STATE", variables=False,
            calling=("switch_channel.c", "switch_channel_perform_set_running_state", 2408))
        self._add_hangup_vars(disposition)
        self.fire_channel_event(
            "CHANNEL_HANGUP_COMPLETE", hangup_first=True,
            calling=("switch_core_state_machine.c", "switch_core_session_reporting_state", 943))
        self._hung_up.set()
        self.caller.stop()
        self._after_hangup_notice()

    def _add_hangup_vars(self, disposition: str) -> None:
        end_us = self.hangup_us
        ans_us = self.answered_us
        dur_us = max(0, end_us - self.created_us)
        bill_us = max(0, end_us - ans_us) if ans_us else 0
        last_app = self.vars.get("current_application", "socket")
        values = dict(self._subst)
        values.update(
            hangup_cause=self.hangup_cause, hangup_q850=Q850.get(self.hangup_cause or "", 0),
            last_app=last_app, hangup_disposition=disposition,
            answer_us=ans_us, answer_epoch=ans_us // 1_000_000,
            answer_stamp=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ans_us / 1e6))
            if ans_us else "",
            end_us=end_us, end_epoch=end_us // 1_000_000,
            end_stamp=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end_us / 1e6)),
            duration_s=dur_us // 1_000_000, duration_ms=dur_us // 1000, duration_us=dur_us,
            bill_s=bill_us // 1_000_000, bill_ms=bill_us // 1000, bill_us=bill_us,
            rtp_in_bytes=0, rtp_in_packets=0, rtp_out_bytes=0, rtp_out_packets=0,
        )
        for k, v in _fill("variables_hangup", values):
            self.set_var(k[len("variable_"):], v)

    def _after_hangup_notice(self) -> None:
        if not self.session_open:
            self._maybe_finish()
            return
        linger = self.linger
        behaviour = self.sim.linger_behaviour
        if behaviour == "ignore":
            linger = None
        if linger is None:
            self._write(esl_codec.disconnect_notice(self.uuid))
            self._session_closed("hangup, no linger")
            return
        self._write(esl_codec.linger_notice(self.uuid, self._subst["channel_name"], linger))
        self.record("linger", seconds=linger)
        wait_s: float | None = None
        if linger > 0:
            wait_s = linger + random.random()
        elif isinstance(behaviour, int | float) and not isinstance(behaviour, bool):
            wait_s = float(behaviour)
        if wait_s is not None:
            self._greenlets.append(gevent.spawn_later(wait_s, self._linger_expired))
        self._maybe_finish()

    def _linger_expired(self) -> None:
        if self.session_open:
            self._write(esl_codec.disconnect_notice(self.uuid))
            self._session_closed("linger time over")

    def _maybe_finish(self) -> None:
        """Once the channel is down and the socket gone: stop every greenlet, delete temp files."""
        if self._finished or not (self._hung_up.is_set() and self._ended.is_set()):
            return
        self._finished = True
        self.recording.close_open_segments(self.recording.now())
        for fork in list(self.forks.values()):
            fork.shutdown()
        for path in self._temp_files:
            try:
                Path(path).unlink()
            except OSError:
                pass
        self.record("finished")
        self.sim._call_finished(self)
        cur = gevent.getcurrent()
        others = [g for g in self._greenlets if g is not cur and not g.dead]
        self._greenlets = []
        self._done.set()
        gevent.killall(others, block=True, timeout=2)

    # ------------------------------------------------------------------ media clock
    def _media_clock(self) -> None:
        """One tick per frame: the caller's ear (recorder) and mouth (forks)."""
        frame_s = self.sim.frame_ms / 1000
        n = self.frame_samples
        silence = b"\x00\x00" * n
        start = time.monotonic()
        offset = start - self.recording.t0
        k = 0
        while not self._finished and not self._hung_up.is_set():
            k += 1
            target = start + k * frame_s
            delay = target - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            # the media timer's time: frames stay contiguous even when a tick runs late
            t = round(offset + k * frame_s, 6)
            played, source = self._write_side(n, t)
            out = played if played is not None else silence
            self.recording.write_frame(t, out, source)
            self.caller.hear(t, out, played is not None)
            caller_pcm = self.caller.read(t, n)
            for fork in list(self.forks.values()):
                fork.push_audio(caller_pcm, out)

    def _write_side(self, n: int, t: float) -> tuple[bytes | None, str | None]:
        pb_frame: bytes | None = None
        pb = self.playback
        if pb is not None and not pb.done.is_set():
            if pb.break_requested:
                pb.broken = not pb.hangup
                self.recording.end_segment(pb.key, t, interrupted=True,
                                           heard_samples=pb.pos)
                pb.done.set()
            else:
                chunk = pb.pcm[pb.pos:pb.pos + n]
                if chunk.size:
                    if not pb.started:
                        pb.started = True
                        self.recording.begin_segment(pb.key, pb.path, "playback", t)
                    pb.pos += chunk.size
                    pb_frame = chunk.tobytes()
                    if chunk.size < n:
                        pb_frame += b"\x00\x00" * (n - chunk.size)
                if pb.pos >= pb.pcm.size:
                    self.recording.end_segment(pb.key, t + self.sim.frame_ms / 1000,
                                               interrupted=False, heard_samples=pb.pos)
                    pb.done.set()
        stream_frame: bytes | None = None
        writing = self.sim.send_silence_when_idle or pb_frame is not None
        streams = any(f.playout is not None for f in self.forks.values())
        if not writing and streams and not self._warned_idle:
            self._warned_idle = True
            self.record("note", what="streamed audio not written: the parked channel "
                        "writes no frames without send_silence_when_idle (fact 18)")
        for fork in self.forks.values() if writing else ():
            if fork.playout is not None and not fork.closed:
                f = fork.playout.next_frame(n)
                if f is not None:
                    stream_frame = f
                    break
        if stream_frame is not None:
            if self._stream_key is None:
                self._stream_key = f"st-{uuidlib.uuid4().hex[:8]}"
                self.recording.begin_segment(self._stream_key, "stream", "stream", t)
            return stream_frame, "stream"
        if self._stream_key is not None:
            self.end_stream_segment(interrupted=False)
        if pb_frame is not None:
            return pb_frame, pb.path if pb else None
        return None, None

    def end_stream_segment(self, interrupted: bool) -> None:
        if self._stream_key is not None:
            self.recording.end_segment(self._stream_key, self.recording.now(),
                                       interrupted=interrupted)
            self._stream_key = None

    def new_temp_file(self, ext: str) -> str:
        n = next(self.sim.temp_counter)
        path = str(Path(self.sim.tmp_dir) / f"{self.uuid}_{n}.tmp{ext}")
        self._temp_files.append(path)
        return path


# ============================================================================ simulator


class FreeSwitchSimulator:
    """A simulated FreeSWITCH box: places calls to a controller's outbound ESL server.

    fork_mode "stream": the jambonz mod_audio_fork (10-token start enables streamed audio back;
    fewer tokens behave like drachtio's). "play_audio": drachtio's module (playAudio -> temp file;
    with 7+ tokens everything after the bugname is metadata).
    """

    def __init__(
        self,
        esl_address: tuple[str, int],
        *,
        fork_mode: ForkMode = "stream",
        frame_ms: int = 20,
        sample_rate: int = 8000,
        tmp_dir: str | None = None,
        linger_behaviour: str | float = "real",
        faults: Faults | None = None,
        transfer_hold_s: float = 0.5,
        crash_on_early_fork: bool = True,
        send_silence_when_idle: bool = True,
    ) -> None:
        if fork_mode not in ("stream", "play_audio"):
            raise ValueError(f"fork_mode must be 'stream' or 'play_audio', not {fork_mode!r}")
        if frame_ms <= 0 or sample_rate % 8000:
            raise ValueError("frame_ms must be > 0 and sample_rate a multiple of 8000")
        self.esl_address = esl_address
        self.fork_mode = fork_mode
        self.frame_ms = frame_ms
        self.sample_rate = sample_rate
        self.tmp_dir = tmp_dir or tempfile.gettempdir()
        self.linger_behaviour = linger_behaviour
        self.faults = faults or Faults()
        self.transfer_hold_s = transfer_hold_s
        self.crash_on_early_fork = crash_on_early_fork
        self.send_silence_when_idle = send_silence_when_idle
        self.core_uuid = str(uuidlib.uuid4())
        self.calls: list[SimulatedCall] = []
        self.calls_by_uuid: dict[str, SimulatedCall] = {}
        self.session_ids = itertools.count(1)
        self.temp_counter = itertools.count(0)
        self._socket_app_uuids: dict[str, str] = {}
        self.crashed = False

    def place_call(
        self,
        caller_number: str = "+4366412345",
        caller_name: str = "",
        destination: str = "+43720123456",
        script: CallerScript | None = None,
        sip_headers: dict[str, str] | None = None,
        faults: Faults | None = None,
    ) -> SimulatedCall:
        """Start one call (non-blocking): the socket app connects to the controller now."""
        if self.crashed:
            raise RuntimeError("the simulated FreeSWITCH crashed earlier (see fact 23)")
        call = SimulatedCall(
            self, caller_number=caller_number, caller_name=caller_name,
            destination=destination, script=script, sip_headers=sip_headers,
            faults=faults or self.faults,
        )
        self.calls.append(call)
        self.calls_by_uuid[call.uuid] = call
        call.start()
        return call

    def run_calls(self, n: int, *, stagger_s: float = 0.0,
                  script_factory: Callable[[int], CallerScript | None] | None = None,
                  **kwargs: Any) -> list[SimulatedCall]:
        """Place `n` calls at once (or `stagger_s` apart); returns them (non-blocking)."""
        calls = []
        for i in range(n):
            script = script_factory(i) if script_factory else kwargs.get("script")
            kw = {k: v for k, v in kwargs.items() if k != "script"}
            calls.append(self.place_call(script=script, **kw))
            if stagger_s:
                gevent.sleep(stagger_s)
        return calls

    def wait_all(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for call in list(self.calls):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not call.wait(left):
                return False
        return True

    def socket_app_uuid(self, call: SimulatedCall) -> str:
        return self._socket_app_uuids.setdefault(call.uuid, str(uuidlib.uuid4()))

    def _call_finished(self, call: SimulatedCall) -> None:
        self.calls_by_uuid.pop(call.uuid, None)

    def shutdown(self) -> None:
        """Hang up every live call and close every socket (for tests and Ctrl-C)."""
        for call in list(self.calls):
            if not call._finished:
                call._hung_up.set()
                call._session_closed("simulator shutdown")
                call._maybe_finish()

    def _crash(self, reason: str) -> None:
        """Fact 23: drachtio's fork on an unanswered channel crashed FreeSWITCH (all calls)."""
        self.crashed = True
        for call in list(self.calls):
            if call._finished:
                continue
            call.record("crash", reason=reason)
            call.answer_state = "hangup"
            call._hung_up.set()
            call._drop("freeswitch crashed")
            call._maybe_finish()


# ============================================================================ helpers


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _event_summary(headers: list[tuple[str, str]], body: str | None) -> dict[str, Any]:
    keep = ("Application", "Application-Data", "Application-Response", "Application-UUID",
            "Playback-File-Path", "Playback-Status", "Hangup-Cause", "Channel-State",
            "DTMF-Digit", "Answer-State")
    out: dict[str, Any] = {}
    for k, v in headers:
        if k in keep:
            out[k] = v
    for k, v in headers:
        if k in ("variable_playback_last_offset_pos", "variable_playback_ms"):
            out[k] = v
    if body:
        out["body"] = body[:500]
    return out
