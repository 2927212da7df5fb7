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

This module is the session core (`SimulatedCall`'s state and life, `FreeSwitchSimulator`); the jobs
of a call live beside it: `esl_session` (socket, commands, event delivery), `api_commands`
(api/bgapi), `dialplan` (park loop, applications, playback), `media_clock` (frames) and `channel`
(variables and event headers from the captures).
"""

from __future__ import annotations

import itertools
import random
import socket
import tempfile
import time
import uuid as uuidlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gevent
import gevent.event
import gevent.lock

from esl_agent.logs import call_logger, redact_number
from esl_agent.sim import esl_codec
from esl_agent.sim.api_commands import ApiCommands
from esl_agent.sim.caller import CallerRuntime, CallerScript
from esl_agent.sim.channel import (
    DEFAULT_SIP_HEADERS,
    EVENT_SEQUENCE,
    Q850,
    ChannelData,
    fill,
    template,
    timestamp_us,
)
from esl_agent.sim.dialplan import App, DialplanApps, Playback, PlaybackError, load_playback
from esl_agent.sim.esl_session import MYEVENTS, EslSession
from esl_agent.sim.fork_client import ForkClient
from esl_agent.sim.media_clock import MediaClock
from esl_agent.sim.recorder import Recorder

__all__ = [
    "DEFAULT_SIP_HEADERS", "MYEVENTS", "Q850", "Faults", "ForkMode", "FreeSwitchSimulator",
    "PlaybackError", "SimulatedCall", "load_playback", "template",
]

ForkMode = Literal["stream", "play_audio"]


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


# ============================================================================ the call


class SimulatedCall(EslSession, ApiCommands, DialplanApps, MediaClock, ChannelData):
    """One simulated inbound call controlled by the controller's outbound ESL server.

    The jobs live in mixins: `EslSession` (socket, commands, event delivery), `ApiCommands`
    (api/bgapi), `DialplanApps` (park loop, applications, playback), `MediaClock` (frames) and
    `ChannelData` (variables, event headers). This class holds the state, the public API and the
    call's life: start, answer, transfer, hangup sequence and cleanup.
    """

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
        self.created_us = timestamp_us()
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
        for k, v in fill("variables", self._subst):
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
        self._apps: deque[App] = deque()
        self._apps_ready = gevent.event.Event()
        self._current_app: App | None = None
        self._sleeper: Playback | None = None
        self.playback: Playback | None = None
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

    # ------------------------------------------------------------------ caller keys, transfer, hangup
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
            self.hangup_us = timestamp_us()
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
        next(EVENT_SEQUENCE)  # CHANNEL_CALLSTATE (not delivered by myevents)
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
