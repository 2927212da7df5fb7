"""`Call`: owns one inbound call from `connect` to cleanup, call control and media together.

Life cycle (run in the connection's greenlet): subscribe (myevents + PLAYBACK/DTMF/CUSTOM fork
events), linger, answer and wait for it to complete (never fork an unanswered channel: fixtures
README fact 23), start mod_audio_fork towards our endpoint with the UUID in the path and in the
metadata, wait for the fork to connect, hand the call to its handler (the conversation), wait for
the hangup, clean up everything exactly once. Any failure on our side ends in a fallback (apology,
then transfer or hangup), never in dead air.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import gevent
import gevent.event
import gevent.pool
import gevent.queue

from esl_agent import logs
from esl_agent.config import Settings
from esl_agent.control import commands
from esl_agent.control.session import EslSession
from esl_agent.control.wire import EslEvent
from esl_agent.errors import CallGone, CommandError, EslAgentError
from esl_agent.media.fork_server import ForkConnection
from esl_agent.media.playout import PlayoutClock
from esl_agent.pipeline.ports import CallerInfo, CommandResult

STATE_VARS_PREFIX = "esl_agent_"
STATE_EVENT = "esl_agent::state"
_PREFORK_LIMIT = 8000 * 2 * 30  # at most 30 s of 8 kHz audio waits for the fork to connect


class CallHandler(Protocol):
    """What runs the conversation of a call (pipeline.conversation.Conversation in production)."""

    def start(self) -> None: ...

    def on_caller_audio(self, pcm: bytes) -> None: ...

    def on_dtmf(self, digit: str) -> None: ...

    def close(self) -> None: ...


HandlerFactory = Callable[["Call"], CallHandler]


class CallStats:
    """Counters of one call, read by the metrics collector (plain ints: cheap on the frame path)."""

    __slots__ = ("bytes_in", "bytes_out", "commands_failed", "frames_in", "frames_out")

    def __init__(self) -> None:
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.commands_failed = 0


class Call:
    """One call under our control. Implements the pipeline's CallControl port."""

    def __init__(
        self,
        session: EslSession,
        settings: Settings,
        handler_factory: HandlerFactory,
        *,
        register: Callable[[Call], None],
        unregister: Callable[[Call], None],
        fork_url: str | None = None,
        apology_file: str | None = None,
        dial_guard: Callable[[str, str], tuple[bool, str]] | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        data = session.session_data or {}
        self.uuid = session.uuid
        self.caller = CallerInfo(
            uuid=self.uuid,
            number=data.get("Caller-Caller-ID-Number", ""),
            name=data.get("Caller-Caller-ID-Name", ""),
            destination=data.get("Caller-Destination-Number", ""),
            sip_headers={k[len("variable_sip_h_"):]: v for k, v in data.items() if k.startswith("variable_sip_h_")},
        )
        self.log = logs.call_logger(self.uuid)
        self.stats = CallStats()
        self.state = "new"
        self.turn_id = 0
        self.started_at = time.monotonic()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_cause = ""
        self.fallback_reason = ""
        self._factory = handler_factory
        self._register = register
        self._unregister = unregister
        self._fork_url = (fork_url or settings.server.fork_url).rstrip("/")
        self._apology_file = apology_file
        self._dial_guard = dial_guard
        self.handler: CallHandler | None = None
        self.fork: ForkConnection | None = None
        self.fork_connected = gevent.event.Event()
        self.fork_failed = gevent.event.Event()
        self.hungup = gevent.event.Event()
        self.hangup_complete = gevent.event.Event()
        self.group = gevent.pool.Group()
        self.clock = PlayoutClock(settings.fork.sample_rate)
        self._dead_turn = -1
        self._max_turn_sent = -1
        self._pending_audio: dict[int, list[bytes]] = {}
        self._prefork: list[tuple[int, bytes]] = []
        self._prefork_bytes = 0
        self._prefork_flushes: list[int] = []
        self._completions: dict[str, gevent.event.AsyncResult] = {}
        self._state_queue: gevent.queue.Queue = gevent.queue.Queue()
        self._cleaned = False
        self._handler_closed = False
        self._closing = False
        self._fork_restarts = 0
        self.last_audio_at = time.monotonic()
        self.tmp_dir = Path(settings.calls.audio_dir) / "calls" / self.uuid

    # =================================================================== life cycle

    def run(self) -> None:
        """The whole call; returns after cleanup. Never raises."""
        try:
            self._subscribe()
            self.group.spawn(self._state_writer)
            answered = self._execute("answer", "")
            self.set_state("answering")
            self._register(self)
            # The handler starts now: its greeting file queues right behind `answer` (sendmsg runs in
            # order), so the caller hears it with no round trip; live audio waits for the fork.
            self.handler = self._factory(self)
            self.handler.start()
            self._await_answer(answered)
            self._start_fork()
            self.group.spawn(self._watchdog)
            self._wait_until_over()
        except CallGone:
            self.log.info("call ended while we worked (%s)", self.hangup_cause or "socket closed")
        except _Fallback as exc:
            self.fallback(str(exc))
        except Exception as exc:
            self.log.exception("call failed: %s", exc)
            self.fallback(f"controller error: {type(exc).__name__}")
        finally:
            self.cleanup()

    def _subscribe(self) -> None:
        s = self.session
        s.register_handle("CHANNEL_EXECUTE_COMPLETE", self._on_execute_complete)
        s.register_handle("CHANNEL_HANGUP", self._on_hangup)
        s.register_handle("CHANNEL_HANGUP_COMPLETE", self._on_hangup_complete)
        s.register_handle("PLAYBACK_START", self._on_playback_start)
        s.register_handle("PLAYBACK_STOP", self._on_playback_stop)
        s.register_handle("DTMF", self._on_dtmf)
        s.register_handle("DISCONNECT", self._on_disconnect)
        s.register_handle("mod_audio_fork::connect", self._on_fork_connect_event)
        s.register_handle("mod_audio_fork::connect_failed", self._on_fork_connect_failed)
        s.register_handle("mod_audio_fork::play_audio", self._on_play_audio)
        s.register_handle("mod_audio_fork::disconnect", self._on_fork_disconnect_event)
        s.command("myevents")
        s.command(commands.EVENT_SUBSCRIPTION)
        s.command("linger")

    def _await_answer(self, done: gevent.event.AsyncResult) -> None:
        """Wait for the answer to complete: the fork must never start on an unanswered channel (fact 23)."""
        try:
            event = done.get(timeout=self.settings.server.command_timeout)
        except gevent.Timeout:
            raise _Fallback("answer did not complete") from None
        if event is None:
            raise CallGone("hung up before answer completed")
        self.answered_at = time.monotonic()

    def _start_fork(self) -> None:
        fs = self.settings.fork
        url = f"{self._fork_url}/fork/{self.uuid}"
        meta = commands.fork_metadata(self.uuid, mode=fs.mode)
        self.session.api(commands.audio_fork_start(self.uuid, url, sample_rate=fs.sample_rate,
                                                   bugname=fs.bugname, metadata=meta, mode=fs.mode))
        waiter = gevent.wait([self.fork_connected, self.fork_failed, self.hungup], count=1,
                             timeout=fs.connect_timeout)
        if self.hungup.is_set():
            raise CallGone("hung up while the fork connected")
        if not self.fork_connected.is_set():
            reason = "fork connect failed" if self.fork_failed.is_set() else "fork did not connect in time"
            if not waiter:
                self.log.warning("%s after %.1f s", reason, fs.connect_timeout)
            # A failed connect leaves the media bug attached (fact 15): remove it.
            self._api_quiet(commands.audio_fork_stop(self.uuid, fs.bugname))
            raise _Fallback(reason)
        self.log.info("fork connected (%s mode)", fs.mode)

    def _wait_until_over(self) -> None:
        limit = self.settings.calls.max_call_seconds
        if not self.hungup.wait(timeout=limit):
            self.log.info("maximum call length reached")
            self.hangup("NORMAL_CLEARING")
            self.hungup.wait(timeout=5)

    def _watchdog(self) -> None:
        """Far end silent (no fork frames) for too long, or the fork dropped: fallback."""
        timeout = self.settings.fork.caller_silence_timeout
        while not self.hungup.is_set() and not self._closing:
            gevent.sleep(min(1.0, timeout / 4))
            if self._closing or self.hungup.is_set():
                return
            if time.monotonic() - self.last_audio_at > timeout:
                self.log.warning("no caller audio for %.0f s", timeout)
                self.group.spawn(self.fallback, "caller audio silent")
                return

    def cleanup(self) -> None:
        """Release everything the call started, exactly once."""
        if self._cleaned:
            return
        self._cleaned = True
        self._closing = True
        self.ended_at = time.monotonic()
        if self.handler is not None:
            self._close_handler(self.handler)
        self._unregister(self)
        if self.fork is not None and not self.fork.closed:
            if not self.hungup.is_set():
                self._api_quiet(commands.audio_fork_stop(self.uuid, self.settings.fork.bugname))
            self.fork.close()
        for waiter in self._completions.values():
            if not waiter.ready():
                waiter.set(None)
        self._state_queue.put(None)
        if self.hungup.is_set() and not self.hangup_complete.is_set() and self.session.connected:
            self.hangup_complete.wait(timeout=2.0)  # linger: close after CHANNEL_HANGUP_COMPLETE
        self.group.kill(block=True, timeout=2)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.session.stop()
        self.log.info("call cleaned up (cause %s)", self.hangup_cause or "-")

    # =================================================================== fallback

    def fallback(self, reason: str) -> None:
        """Apologise, then transfer to the fallback extension or hang up. Never raises."""
        if self.fallback_reason or self.hungup.is_set():
            return
        self.fallback_reason = reason
        self.log.warning("fallback: %s", reason)
        try:
            self.stop_audio(wait=True)
            self.set_state("fallback", reason=reason)
            if self._apology_file and os.path.exists(self._apology_file):
                done = self._execute("playback", self._apology_file)
                done.get(timeout=15)
            ext = self.settings.calls.fallback_extension
            if ext and not self.hungup.is_set():
                result = self.transfer(ext, self.settings.calls.fallback_dialplan, self.settings.calls.fallback_context)
                if result.ok:
                    return
            if not self.hungup.is_set():
                self.hangup("NORMAL_TEMPORARY_FAILURE")
                self.hungup.wait(timeout=3)  # `exit` before the hangup ran would let the dialplan go on
        except (CallGone, gevent.Timeout):
            pass
        except Exception:
            self.log.exception("fallback failed; hanging up")
            self.hangup("NORMAL_TEMPORARY_FAILURE")

    # =================================================================== CallControl port

    def send_audio(self, pcm: bytes, turn_id: int) -> None:
        if turn_id <= self._dead_turn or not pcm or self.hungup.is_set():
            return
        self._max_turn_sent = max(self._max_turn_sent, turn_id)
        if self.settings.fork.mode == "play_audio":
            self._pending_audio.setdefault(turn_id, []).append(pcm)
            return
        fork = self.fork
        if fork is None:  # live audio before the fork connected: keep it (bounded) until it does
            if not self.fork_failed.is_set() and self._prefork_bytes < _PREFORK_LIMIT:
                self._prefork.append((turn_id, pcm))
                self._prefork_bytes += len(pcm)
            return
        if fork.send_audio(pcm, lambda: turn_id > self._dead_turn):
            self.clock.sent(len(pcm))
            self.stats.frames_out += 1
            self.stats.bytes_out += len(pcm)

    def flush_audio(self, turn_id: int) -> None:
        if self.settings.fork.mode != "play_audio":
            return
        if self.fork is None:  # sent once the fork connects
            self._prefork_flushes.append(turn_id)
            return
        chunks = self._pending_audio.pop(turn_id, None)
        if not chunks or turn_id <= self._dead_turn:
            return
        pcm = b"".join(chunks)
        if self.fork.send_text(commands.play_audio_message(pcm, self.settings.fork.sample_rate, turn=turn_id)):
            self.stats.frames_out += 1
            self.stats.bytes_out += len(pcm)

    def stop_audio(self, wait: bool = False) -> None:
        """Silence at once: killAudio on the fork, then `uuid_break all` for queued playbacks (fact 13).

        The break runs in the background unless `wait` (needed before queueing a new playback, which
        a late `uuid_break all` would otherwise flush without a completion event).
        """
        self._dead_turn = max(self._dead_turn, self._max_turn_sent, self.turn_id)
        self._pending_audio.clear()
        self._prefork.clear()
        self._prefork_bytes = 0
        if self.fork is not None:
            self.fork.send_text(commands.KILL_AUDIO_MESSAGE)
        self.clock.reset()
        if self.hungup.is_set():
            return
        if wait:
            self._api_quiet(commands.uuid_break(self.uuid, all_queued=True))
        else:
            self.group.spawn(self._api_quiet, commands.uuid_break(self.uuid, all_queued=True))

    def heard_ms(self) -> float:
        return self.clock.heard_ms()

    def playing(self) -> bool:
        return self.clock.playing()

    def play_file(self, path: str) -> CommandResult:
        try:
            self._execute("playback", _checked_path(path))
        except (CommandError, CallGone) as exc:
            return self._failed(exc)
        return CommandResult(True, "+OK")

    def play_file_and_wait(self, path: str, timeout: float = 60.0) -> CommandResult:
        """Play a file and wait until FreeSWITCH reports it complete."""
        try:
            done = self._execute("playback", path)
            event = done.get(timeout=timeout)
        except (CommandError, CallGone) as exc:
            return self._failed(exc)
        if event is None:
            return CommandResult(False, "-ERR call ended")
        return CommandResult(True, event.get("Application-Response"))

    def transfer(self, destination: str, dialplan: str = "XML", context: str = "default") -> CommandResult:
        """uuid_transfer; a destination that looks like a phone number must pass the dial guard."""
        if self._dial_guard is not None and _looks_like_number(destination):
            allowed, rule = self._dial_guard(destination, self.caller.number)
            if not allowed:
                self.log.warning("transfer refused by dial policy (%s)", rule)
                return CommandResult(False, f"-ERR denied by dial policy: {rule}")
        try:
            reply = self.session.api(commands.uuid_transfer(self.uuid, destination, dialplan, context))
        except (CommandError, CallGone) as exc:
            return self._failed(exc)
        self.set_state("transferred")
        return CommandResult(True, reply)

    def hangup(self, cause: str = "NORMAL_CLEARING") -> CommandResult:
        try:
            reply = self.session.hangup_call(commands.hangup_cause(cause))
        except (CommandError, CallGone) as exc:
            return self._failed(exc)
        return CommandResult(True, reply)

    def set_vars(self, variables: dict[str, str]) -> CommandResult:
        try:
            return CommandResult(True, self.session.api(commands.uuid_setvar_multi(self.uuid, variables)))
        except (CommandError, CallGone) as exc:
            return self._failed(exc)

    def set_state(self, state: str, **fields: str) -> None:
        """Publish agent state: channel variables (uuid_dump) + CUSTOM esl_agent::state (fs_cli)."""
        self.state = state
        if "turn" in fields:
            try:
                self.turn_id = int(fields["turn"])
            except ValueError:
                pass
        self.log.info("state %s", state, extra={"turn": fields.get("turn", "")})
        if self.settings.calls.publish_state and not self._cleaned:
            self._state_queue.put((state, dict(fields)))

    # =================================================================== fork sink

    def fork_attached(self, conn: ForkConnection) -> None:
        if self.fork is not None and not self.fork.closed:
            self.fork.close(1000, "replaced")
        self.fork = conn
        self.last_audio_at = time.monotonic()
        self.fork_connected.set()
        prefork, self._prefork, self._prefork_bytes = self._prefork, [], 0
        for turn_id, pcm in prefork:
            self.send_audio(pcm, turn_id)
        flushes, self._prefork_flushes = self._prefork_flushes, []
        for turn_id in flushes:
            self.flush_audio(turn_id)

    def fork_text(self, text: str) -> None:
        # The first text frame is our metadata echoed back (fact 11); later ones are marks etc.
        try:
            message = json.loads(text)
        except ValueError:
            self.log.warning("fork sent a text frame that is not JSON (%d bytes); ignored", len(text))
            return
        if isinstance(message, dict) and message.get("type") == "mark":
            self.log.debug("mark %s", message.get("data"))

    def fork_audio(self, pcm: bytes) -> None:
        self.stats.frames_in += 1
        self.stats.bytes_in += len(pcm)
        self.last_audio_at = time.monotonic()
        handler = self.handler
        if handler is not None:
            handler.on_caller_audio(pcm)

    def fork_closed(self, reason: str) -> None:
        if self._closing or self.hungup.is_set():
            return
        self.group.spawn(self._restart_fork, reason)

    def _restart_fork(self, reason: str) -> None:
        """The fork WebSocket dropped mid-call: stop the old media bug and start a new fork.

        At hangup FreeSWITCH closes the fork (1000) on its own socket, which can beat CHANNEL_HANGUP
        on the event socket; so first give the hangup a moment to arrive.
        """
        if self.hungup.wait(timeout=0.5) or self._closing:
            return
        self.log.warning("fork closed while the call is up: %s", reason)
        if self._fork_restarts >= 2:
            self.fallback("fork lost")
            return
        self._fork_restarts += 1
        self.fork_connected.clear()
        self.fork_failed.clear()
        self._api_quiet(commands.audio_fork_stop(self.uuid, self.settings.fork.bugname))
        try:
            self._start_fork()
        except _Fallback as exc:
            self.fallback(str(exc))
        except (CallGone, CommandError) as exc:
            self.log.warning("fork restart failed: %s", exc)
            self.fallback("fork lost")

    # =================================================================== ESL events

    def _execute(self, app: str, arg: str) -> gevent.event.AsyncResult:
        waiter = gevent.event.AsyncResult()
        event_uuid = os.urandom(16).hex()
        self._completions[event_uuid] = waiter
        try:
            self.session.execute(app, arg, event_uuid=event_uuid)
        except Exception:
            self._completions.pop(event_uuid, None)
            raise
        return waiter

    def _on_execute_complete(self, event: EslEvent) -> None:
        waiter = self._completions.pop(event.get("Application-UUID"), None)
        if waiter is not None and not waiter.ready():
            waiter.set(event)

    def _on_hangup(self, event: EslEvent) -> None:
        self.hangup_cause = event.get("Hangup-Cause", self.hangup_cause)
        self._mark_hungup()

    def _on_hangup_complete(self, event: EslEvent) -> None:
        self.hangup_cause = self.hangup_cause or event.get("Hangup-Cause")
        self.hangup_complete.set()
        self._mark_hungup()

    def _on_disconnect(self, notice) -> None:
        disposition = notice.headers.get("Content-Disposition", "")
        if disposition != "linger":
            self.hangup_complete.set()
        self._mark_hungup()

    def _mark_hungup(self) -> None:
        if self.hungup.is_set():
            return
        self.hungup.set()
        for waiter in self._completions.values():
            if not waiter.ready():
                waiter.set(None)
        handler = self.handler
        if handler is not None:  # cancel the call's work now, not at the next failed command
            gevent.spawn(self._close_handler, handler)

    def _close_handler(self, handler: CallHandler) -> None:
        """Close the handler once, whoever asks first (the hangup event or the cleanup)."""
        if self._handler_closed:
            return
        self._handler_closed = True
        try:
            handler.close()
        except Exception:
            self.log.exception("handler close failed")

    def _on_playback_start(self, event: EslEvent) -> None:
        self.clock.file_started()

    def _on_playback_stop(self, event: EslEvent) -> None:
        offset = event.get("variable_playback_last_offset_pos")
        if event.get("Playback-Status") == "break" and offset.isdigit():
            self.clock.file_stopped(int(offset))
        else:
            self.clock.file_stopped()
        callback = getattr(self.handler, "on_playback_stop", None)
        if callback is not None:
            callback(event.get("Playback-File-Path"), event.get("Playback-Status"))

    def _on_dtmf(self, event: EslEvent) -> None:
        digit = event.get("DTMF-Digit")
        if digit and self.handler is not None:
            self.handler.on_dtmf(digit)

    def _on_fork_connect_event(self, event: EslEvent) -> None:
        self.log.debug("mod_audio_fork::connect")

    def _on_fork_connect_failed(self, event: EslEvent) -> None:
        self.log.warning("mod_audio_fork::connect_failed %s", event.text[:200])
        self.fork_failed.set()

    def _on_fork_disconnect_event(self, event: EslEvent) -> None:
        self.log.debug("mod_audio_fork::disconnect")

    def _on_play_audio(self, event: EslEvent) -> None:
        """play_audio mode: the module wrote our audio to a file (fact 13); play it unless stale."""
        try:
            data = json.loads(event.body or b"{}")
        except ValueError:
            self.log.warning("play_audio event with a body that is not JSON")
            return
        path = data.get("file")
        turn = data.get("turn", self.turn_id)
        if not path or (isinstance(turn, int) and turn <= self._dead_turn):
            return
        self.group.spawn(self._play_quiet, path)

    def _play_quiet(self, path: str) -> None:
        try:
            self._execute("playback", path)
        except (CommandError, CallGone) as exc:
            self._failed(exc)

    # =================================================================== helpers

    def _state_writer(self) -> None:
        """Writes state changes in order, off the pipeline's path."""
        while True:
            item = self._state_queue.get()
            if item is None or self.hungup.is_set():
                return
            state, fields = item
            variables = {f"{STATE_VARS_PREFIX}state": state, f"{STATE_VARS_PREFIX}turn": str(self.turn_id)}
            for key, value in fields.items():
                variables[f"{STATE_VARS_PREFIX}{key}"] = value
            try:
                self.session.api(commands.uuid_setvar_multi(self.uuid, variables))
                self.session.sendevent(STATE_EVENT, {"Unique-ID": self.uuid, "Agent-State": state,
                                                     "Agent-Turn": str(self.turn_id),
                                                     **{f"Agent-{k.title()}": v for k, v in fields.items()}})
            except (CommandError, CallGone) as exc:
                self._failed(exc)

    def _api_quiet(self, command: str) -> CommandResult:
        try:
            return CommandResult(True, self.session.api(command))
        except (CommandError, CallGone) as exc:
            return self._failed(exc)

    def _failed(self, exc: EslAgentError) -> CommandResult:
        self.stats.commands_failed += 1
        reply = exc.reply if isinstance(exc, CommandError) else f"-ERR {exc}"
        self.log.warning("command failed: %s", exc)
        return CommandResult(False, reply)


class _Fallback(EslAgentError):
    """Raised inside the set-up to go straight to the fallback."""


def _checked_path(path: str) -> str:
    if any(c in path for c in "\r\n") or not path:
        raise CommandError("playback", "-ERR bad file path")
    return path


def _looks_like_number(destination: str) -> bool:
    digits = destination.lstrip("+")
    return destination.startswith(("+", "00")) or (digits.isdigit() and len(digits) >= 7)
