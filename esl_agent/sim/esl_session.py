"""The event-socket side of a simulated call: the socket, commands and event delivery.

`EslSession` (mixed into `SimulatedCall`) reads the controller's commands in order
(`esl_codec.CommandReader`), answers them as mod_event_socket does (`_cmd_<name>`; api commands
live in `api_commands`), keeps the subscriptions (myevents, event, nixevent, filter) and delivers
fired events that match them. The fault switches of `Faults` that break the wire live here too.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any

import gevent

from esl_agent.sim import esl_codec
from esl_agent.sim.dialplan import App

# myevents subscribes to exactly these (PROTOCOLS 1.5)
MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE",
    "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK", "DETECTED_SPEECH", "DTMF", "NOTALK", "TALK",
})


class EslSession:
    """The outbound event-socket session of a `SimulatedCall` (mixed into it)."""

    # ------------------------------------------------------------------ events
    def fire(self, name: str, headers: list[tuple[str, str]], body: str | None = None,
             subclass: str | None = None) -> None:
        """Fire an event: record it and deliver it if this socket is subscribed."""
        delivered = self._wants(name, subclass, headers)
        self.record("event", name=name, subclass=subclass, delivered=delivered,
                    **event_summary(headers, body))
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

    # ------------------------------------------------------------------ socket I/O and wire faults
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
            self._apps.append(App(app, arg, ev_uuid, loops))
            self._apps_ready.set()
        elif command == "hangup":
            cause = cmd.header("hangup-cause") or "NORMAL_CLEARING"
            self._spawn_later(0.02, self._do_hangup, cause, "send_bye", "sendmsg hangup")
        else:
            self.record("ignored_sendmsg", command=command)


def event_summary(headers: list[tuple[str, str]], body: str | None) -> dict[str, Any]:
    """The headers of an event worth keeping in the call's timeline."""
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
