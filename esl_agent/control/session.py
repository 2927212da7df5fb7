"""Our event-socket session: greenswitch's OutboundSession with a correct framer and deadlines.

greenswitch 0.0.19 reads line by line, URL-decodes whole event payloads (mangling event bodies:
PROTOCOLS.md 4.4), sends with `sock.send` (partial writes) and waits for replies forever. This
subclass keeps greenswitch's machinery (handler registry, reply FIFO, event queue and dispatch
greenlet, linger and hangup bookkeeping) and replaces exactly those parts: bytes are framed by
`control.wire`, every command has a deadline, writes are serialised and complete, and a dropped
connection wakes every waiter.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Mapping

import gevent
import gevent.event
import gevent.lock
from greenswitch.esl import NotConnectedError, OutboundSession, OutboundSessionHasGoneAway

from esl_agent.control.wire import EslEvent, EslFrameParser, EslMessage, parse_event
from esl_agent.errors import CallGone, CommandError, ProtocolError

log = logging.getLogger("esl_agent.control.session")

_RECV_BYTES = 65536


class _Notice:
    """A disconnect notice in the shape greenswitch's dispatcher expects (`.headers`)."""

    def __init__(self, msg: EslMessage) -> None:
        self.headers = dict(msg.headers)
        self.body = msg.body


class EslSession(OutboundSession):
    """One outbound event-socket connection (one call), on gevent.

    Events are `EslEvent`s with a correct `.body`; register handlers with greenswitch's
    `register_handle(name, fn)` (name = Event-Name, or Event-Subclass for CUSTOM, 'DISCONNECT').
    """

    def __init__(self, client_address: tuple[str, int], sock, command_timeout: float = 5.0) -> None:
        self._parser = EslFrameParser()
        self._write_lock = gevent.lock.Semaphore()
        self.command_timeout = command_timeout
        self.closed = gevent.event.Event()
        self.protocol_error: str = ""
        self.client_address = client_address
        super().__init__(client_address, sock)

    # ---------------------------------------------------------------- reading

    def receive_events(self) -> None:  # replaces greenswitch's readline loop
        try:
            while self._run:
                try:
                    data = self.sock.recv(_RECV_BYTES)
                except OSError:
                    data = b""  # a reset is an end of stream; a cut-off message is still reported
                if not data:
                    self._parser.check_eof()
                    break
                for msg in self._parser.feed(data):
                    self._dispatch(msg)
        except ProtocolError as exc:
            self.protocol_error = str(exc)
            log.warning("event socket protocol error from %s: %s", self.client_address, exc)
        finally:
            self._connection_lost()

    def _dispatch(self, msg: EslMessage) -> None:
        ctype = msg.content_type
        if ctype in ("command/reply", "api/response"):
            if not self._commands_sent:
                raise ProtocolError(f"unexpected {ctype} with no command waiting")
            self._commands_sent.pop(0).set(msg)
        elif ctype == "text/disconnect-notice":
            if msg.headers.get("Content-Disposition") == "linger":
                self._lingering = True
            else:
                self.connected = False
            self._esl_event_queue.put(_Notice(msg))
        elif ctype == "text/event-plain":
            self._esl_event_queue.put(parse_event(msg.body))
        elif ctype == "text/rude-rejection":
            self.connected = False
        elif ctype in ("log/data", "auth/request"):
            pass
        else:
            log.info("ignoring event-socket message of type %s", ctype)

    def _connection_lost(self) -> None:
        self.connected = False
        self._outbound_connected = False
        pending, self._commands_sent = self._commands_sent, []
        for waiter in pending:
            if not waiter.ready():
                waiter.set_exception(CallGone("event socket closed"))
        for expected in self.expected_events.values():
            for _, _, waiter in expected:
                if not waiter.ready():
                    waiter.set_exception(CallGone("event socket closed"))
        self.closed.set()
        # Wake the dispatch greenlet so DISCONNECT handlers run even without a notice.
        self._esl_event_queue.put(_Notice(EslMessage({"Content-Type": "text/disconnect-notice",
                                                      "Content-Disposition": "closed"})))

    # ---------------------------------------------------------------- writing

    def send(self, data: str, timeout: float | None = None) -> EslMessage:  # type: ignore[override]
        """Send one command; return its reply. Raises CallGone, or CommandError on timeout."""
        if not self.connected:
            raise CallGone("event socket is not connected")
        waiter = gevent.event.AsyncResult()
        raw = (data + "\n\n").encode("utf-8")
        with self._write_lock:  # FIFO position and bytes on the wire must stay in the same order
            self._commands_sent.append(waiter)
            try:
                self.sock.sendall(raw)
            except OSError as exc:
                raise CallGone(f"event socket write failed: {exc}") from None
        try:
            return waiter.get(timeout=timeout if timeout is not None else self.command_timeout)
        except gevent.Timeout:
            # The late reply will still pop this waiter, keeping the FIFO aligned.
            raise CommandError(data.split("\n", 1)[0], "-ERR timeout waiting for reply") from None
        except (NotConnectedError, OutboundSessionHasGoneAway):
            raise CallGone("event socket closed") from None

    def command(self, data: str, timeout: float | None = None) -> str:
        """Send a command and return its reply text; raise CommandError on -ERR / -USAGE."""
        reply = self.send(data, timeout).reply_text
        if reply.startswith(("-ERR", "-USAGE")):
            raise CommandError(data.split("\n", 1)[0], reply)
        return reply

    def api(self, command: str, timeout: float | None = None) -> str:
        """Run `api <command>` (one line) and return its output; raise CommandError on -ERR."""
        if "\n" in command or "\r" in command:
            raise CommandError(command[:40], "-ERR api commands are one line")
        return self.command(f"api {command}", timeout)

    def execute(
        self,
        app: str,
        arg: str = "",
        *,
        event_uuid: str | None = None,
        event_lock: bool = True,
        timeout: float | None = None,
    ) -> str:
        """Queue a dialplan application with sendmsg; return the Event-UUID to match completion."""
        event_uuid = event_uuid or str(uuidlib.uuid4())
        lines = ["sendmsg", "call-command: execute", f"execute-app-name: {app}"]
        if arg:
            if "\n" in arg or "\r" in arg:
                raise CommandError(f"sendmsg {app}", "-ERR application arguments are one line")
            lines.append(f"execute-app-arg: {arg}")
        if event_lock:
            lines.append("event-lock: true")
        lines.append(f"Event-UUID: {event_uuid}")
        self.command("\n".join(lines), timeout)
        return event_uuid

    def hangup_call(self, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> str:
        return self.command(f"sendmsg\ncall-command: hangup\nhangup-cause: {cause}", timeout)

    def sendevent(self, subclass: str, headers: Mapping[str, str], timeout: float | None = None) -> str:
        """Fire a CUSTOM event (e.g. esl_agent::state) into FreeSWITCH's event system."""
        lines = ["sendevent CUSTOM", f"Event-Subclass: {subclass}"]
        for key, value in headers.items():
            clean = str(value).replace("\n", " ").replace("\r", " ")
            lines.append(f"{key}: {clean}")
        return self.command("\n".join(lines), timeout)

    # ---------------------------------------------------------------- life cycle

    def connect(self, timeout: float | None = None) -> dict[str, str]:  # type: ignore[override]
        """Send `connect` and keep the channel data (URL-decoded)."""
        if self._outbound_connected:
            return self.session_data
        reply = self.send("connect", timeout)
        if "Unique-ID" not in reply.headers:
            raise ProtocolError("connect reply without Unique-ID")
        self.session_data = reply.headers
        self._outbound_connected = True
        return self.session_data

    def on_hangup(self, event) -> None:  # greenswitch's logs the raw caller number; ours does not
        self._outbound_connected = False

    @property
    def uuid(self) -> str:
        data = self.session_data or {}
        return data.get("Unique-ID") or data.get("variable_uuid", "")

    def stop(self) -> None:
        """Say `exit` if still connected, then close; safe to call from any greenlet, once or more."""
        if self.connected:
            try:
                self.send("exit", timeout=2.0)
            except Exception:
                pass
        self._run = False
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.sock_file.close()
        except OSError:
            pass
        current = gevent.getcurrent()
        for g in (self._receive_events_greenlet, self._process_events_greenlet):
            if g is not None and g is not current:
                g.kill(block=True, timeout=2)

    def process_events(self) -> None:
        """greenswitch's dispatcher, but it ends promptly once the session stops."""
        while self._run or not self._esl_event_queue.empty():
            try:
                event = self._esl_event_queue.get(timeout=0.5)
            except gevent.queue.Empty:
                continue
            if isinstance(event, _Notice):
                handlers = self.event_handlers.get("DISCONNECT")
            elif event.name == "CUSTOM":
                handlers = self.event_handlers.get(event.subclass) or self.event_handlers.get("*")
            else:
                handlers = self.event_handlers.get(event.name) or self.event_handlers.get("*")
            for handler in handlers or ():
                try:
                    handler(event)
                except Exception:
                    log.exception("event handler %s failed", getattr(handler, "__name__", handler))


__all__ = ["CallGone", "CommandError", "EslEvent", "EslSession"]
