"""A fake controller for the simulator tests: plain gevent sockets + wsproto, nothing of ours.

`FakeEsl` is the controller's outbound ESL server (it accepts the simulator's TCP connection and
sends commands); `FakeForkServer` is the controller's fork WebSocket endpoint.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import gevent
import gevent.event
import gevent.queue
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Request,
    TextMessage,
)

from esl_agent.sim.esl_codec import Frame, FrameReader, parse_event_plain, url_decode


def event_name(frame: Frame) -> str | None:
    if frame.content_type != "text/event-plain":
        return None
    headers, _ = parse_event_plain(frame.body)
    d = dict(headers)
    if d.get("Event-Name") == "CUSTOM":
        return url_decode(d.get("Event-Subclass", ""))
    return d.get("Event-Name")


def event_headers(frame: Frame) -> dict[str, str]:
    headers, _ = parse_event_plain(frame.body)
    return {k: url_decode(v) for k, v in headers}


class EslConn:
    """One accepted simulator connection, seen from the controller."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.chunks: list[bytes] = []
        self.frames: list[Frame] = []
        self.replies: gevent.queue.Queue = gevent.queue.Queue()
        self.events: list[Frame] = []
        self.notices: list[Frame] = []
        self.closed = gevent.event.Event()
        self._changed = gevent.event.Event()
        self._g = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed.set()
                self._changed.set()
                return
            self.chunks.append(data)
            for f in self.reader.feed(data):
                self.frames.append(f)
                ct = f.content_type
                if ct in ("command/reply", "api/response"):
                    self.replies.put(f)
                elif ct == "text/disconnect-notice":
                    self.notices.append(f)
                else:
                    self.events.append(f)
                self._changed.set()

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n\n")

    def command(self, text: str, timeout: float = 5.0) -> Frame:
        self.send(text)
        return self.replies.get(timeout=timeout)

    def api(self, text: str, timeout: float = 5.0) -> str:
        return self.command(f"api {text}", timeout).body.decode()

    def wait_event(self, name: str, timeout: float = 5.0, start: int = 0) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            for f in self.events[start:]:
                if event_name(f) == name:
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} within {timeout}s; got "
                                     f"{[event_name(f) for f in self.events]}")
            self._changed.clear()
            self._changed.wait(min(left, 0.05))

    def wait_notice(self, disposition: str, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            for f in self.notices:
                if f.get("Content-Disposition") == disposition:
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {disposition} notice within {timeout}s")
            self._changed.clear()
            self._changed.wait(min(left, 0.05))

    def event_names(self) -> list[str | None]:
        return [event_name(f) for f in self.events]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self._g.kill(block=False)


class FakeEsl:
    """The controller's outbound ESL server, bound to 127.0.0.1 port 0."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.address = self.listener.getsockname()
        self.conns: list[EslConn] = []

    def accept(self, timeout: float = 5.0) -> EslConn:
        with gevent.Timeout(timeout):
            sock, _ = self.listener.accept()
        conn = EslConn(sock)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.listener.close()


@dataclass
class WsFrame:
    t: float
    kind: str  # text | binary | close
    data: bytes | str
    raw_len: int = 0


@dataclass
class ForkConn:
    request: bytes = b""
    frames: list[WsFrame] = field(default_factory=list)
    ws: WSConnection | None = None
    sock: socket.socket | None = None
    closed: gevent.event.Event = field(default_factory=gevent.event.Event)
    changed: gevent.event.Event = field(default_factory=gevent.event.Event)
    raw_in: bytearray = field(default_factory=bytearray)

    def send_text(self, text: str) -> None:
        assert self.ws is not None and self.sock is not None
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def send_binary(self, data: bytes) -> None:
        assert self.ws is not None and self.sock is not None
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        assert self.ws is not None and self.sock is not None
        self.sock.sendall(self.ws.send(CloseConnection(code=code, reason=reason)))

    def texts(self) -> list[str]:
        return [f.data for f in self.frames if f.kind == "text"]  # type: ignore[misc]

    def binaries(self) -> list[WsFrame]:
        return [f for f in self.frames if f.kind == "binary"]

    def wait_for(self, pred, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("condition not met on the fork connection")
            self.changed.clear()
            self.changed.wait(min(left, 0.05))


class FakeForkServer:
    """The controller's fork endpoint: accepts, answers the upgrade, records frames."""

    def __init__(self, subprotocol: str | None = "audio.drachtio.org") -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.subprotocol = subprotocol
        self.conns: list[ForkConn] = []
        self.new_conn = gevent.event.Event()
        self._g = gevent.spawn(self._accept_loop)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            conn = ForkConn(sock=sock, ws=WSConnection(ConnectionType.SERVER))
            self.conns.append(conn)
            gevent.spawn(self._serve, conn)

    def _serve(self, conn: ForkConn) -> None:
        assert conn.sock is not None and conn.ws is not None
        t0 = time.monotonic()
        text_parts: list[str] = []
        while True:
            try:
                data = conn.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                conn.closed.set()
                conn.changed.set()
                return
            conn.raw_in += data
            if not conn.request and b"\r\n\r\n" in conn.raw_in:
                conn.request = bytes(conn.raw_in[: conn.raw_in.index(b"\r\n\r\n") + 4])
            conn.ws.receive_data(data)
            for ev in conn.ws.events():
                now = time.monotonic() - t0
                if isinstance(ev, Request):
                    conn.sock.sendall(conn.ws.send(AcceptConnection(subprotocol=self.subprotocol)))
                    self.new_conn.set()
                elif isinstance(ev, TextMessage):
                    text_parts.append(ev.data)
                    if ev.message_finished:
                        conn.frames.append(WsFrame(now, "text", "".join(text_parts)))
                        text_parts = []
                elif isinstance(ev, BytesMessage):
                    conn.frames.append(WsFrame(now, "binary", bytes(ev.data)))
                elif isinstance(ev, CloseConnection):
                    conn.frames.append(WsFrame(now, "close", str(ev.code)))
                    try:
                        conn.sock.sendall(conn.ws.send(ev.response()))
                    except Exception:
                        pass
                conn.changed.set()

    def wait_conn(self, n: int = 1, timeout: float = 5.0) -> ForkConn:
        deadline = time.monotonic() + timeout
        while len(self.conns) < n or not self.conns[n - 1].request:
            if time.monotonic() > deadline:
                raise AssertionError("no fork connection")
            self.new_conn.clear()
            self.new_conn.wait(0.05)
        return self.conns[n - 1]

    def close(self) -> None:
        self._g.kill(block=False)
        self.listener.close()
        for c in self.conns:
            if c.sock is not None:
                try:
                    c.sock.close()
                except OSError:
                    pass


def sim_greenlets() -> list:
    """Live greenlets that belong to the simulator (calls, forks, caller scripts)."""
    import gc

    from esl_agent.sim.caller import CallerRuntime
    from esl_agent.sim.fork_client import ForkClient
    from esl_agent.sim.freeswitch import SimulatedCall

    out = []
    for obj in gc.get_objects():
        if isinstance(obj, gevent.Greenlet) and not obj.dead:
            owner = getattr(getattr(obj, "_run", None), "__self__", None)
            if isinstance(owner, SimulatedCall | ForkClient | CallerRuntime):
                out.append(obj)
    return out

