"""The fork WebSocket endpoint, driven by a wsproto client that behaves like mod_audio_fork."""

from __future__ import annotations

import gevent
import gevent.socket
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from esl_agent.media.fork_server import ForkServer

pytestmark = pytest.mark.wire


class Sink:
    def __init__(self) -> None:
        self.audio: list[bytes] = []
        self.texts: list[str] = []
        self.closed: list[str] = []
        self.conn = None
        self.done = gevent.event.Event()

    def fork_attached(self, conn) -> None:
        self.conn = conn

    def fork_text(self, text: str) -> None:
        self.texts.append(text)

    def fork_audio(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    def fork_closed(self, reason: str) -> None:
        self.closed.append(reason)
        self.done.set()


class Client:
    """The fork module's side: upgrade like fact 10, masked frames."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = gevent.socket.create_connection(("127.0.0.1", port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target=path, subprotocols=["audio.drachtio.org"])))
        self.events: list = []

    def read_events(self, until: type, timeout: float = 3.0) -> list:
        with gevent.Timeout(timeout):
            while not any(isinstance(e, until) for e in self.events):
                data = self.sock.recv(65536)
                if not data:
                    break
                self.ws.receive_data(data)
                self.events.extend(self.ws.events())
        return self.events

    def send(self, event) -> None:
        self.sock.sendall(self.ws.send(event))


@pytest.fixture()
def server():
    sinks: dict[str, Sink] = {"call-1": Sink(), "call-2": Sink()}
    srv = ForkServer(("127.0.0.1", 0), sinks.get, max_message_bytes=4096)
    srv.start()
    yield srv, sinks
    srv.stop()


def test_routes_metadata_and_audio_to_the_right_call(server) -> None:
    srv, sinks = server
    a, b = Client(srv.port, "/fork/call-1"), Client(srv.port, "/fork/call-2")
    for client in (a, b):
        accepted = [e for e in client.read_events(AcceptConnection) if isinstance(e, AcceptConnection)]
        assert accepted[0].subprotocol == "audio.drachtio.org"
    a.send(TextMessage(data='{"uuid":"call-1"}'))
    a.send(BytesMessage(data=b"\x01\x00" * 160))
    b.send(BytesMessage(data=b"\x02\x00" * 240))  # 30 ms frames: 480 bytes (fact 12)
    a.send(CloseConnection(code=1000))
    b.send(CloseConnection(code=1000))
    assert sinks["call-1"].done.wait(3) and sinks["call-2"].done.wait(3)
    assert sinks["call-1"].texts == ['{"uuid":"call-1"}']
    assert b"".join(sinks["call-1"].audio) == b"\x01\x00" * 160
    assert b"".join(sinks["call-2"].audio) == b"\x02\x00" * 240
    assert "1000" in sinks["call-1"].closed[0]


def test_audio_back_reaches_the_client(server) -> None:
    srv, sinks = server
    client = Client(srv.port, "/fork/call-1")
    client.read_events(AcceptConnection)
    assert sinks["call-1"].conn is not None
    sinks["call-1"].conn.send_audio(b"\x05\x00" * 800)
    sinks["call-1"].conn.send_text('{"type":"killAudio"}')
    events = client.read_events(TextMessage)
    assert any(isinstance(e, BytesMessage) and bytes(e.data) == b"\x05\x00" * 800 for e in events)
    assert any(isinstance(e, TextMessage) and e.data == '{"type":"killAudio"}' for e in events)


def test_unknown_call_is_rejected_and_server_keeps_serving(server) -> None:
    srv, _sinks = server
    stranger = Client(srv.port, "/fork/no-such-call")
    events = stranger.read_events(RejectConnection)
    assert any(isinstance(e, RejectConnection) and e.status_code == 404 for e in events)
    assert srv.rejected == 1
    ok = Client(srv.port, "/fork/call-1")
    assert any(isinstance(e, AcceptConnection) for e in ok.read_events(AcceptConnection))


def test_odd_length_frames_are_reassembled_by_bytes(server) -> None:
    srv, sinks = server
    client = Client(srv.port, "/fork/call-1")
    client.read_events(AcceptConnection)
    client.send(BytesMessage(data=b"\x01\x02\x03"))
    client.send(BytesMessage(data=b"\x04\x05\x06\x07\x08\x09"))
    client.send(CloseConnection(code=1000))
    assert sinks["call-1"].done.wait(3)
    joined = b"".join(sinks["call-1"].audio)
    assert joined == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    assert all(len(chunk) % 2 == 0 for chunk in sinks["call-1"].audio)


def test_oversized_message_closes_with_1009_and_others_continue(server) -> None:
    srv, sinks = server
    client = Client(srv.port, "/fork/call-1")
    client.read_events(AcceptConnection)
    client.send(BytesMessage(data=b"\x00" * 10000))
    events = client.read_events(CloseConnection)
    closes = [e for e in events if isinstance(e, CloseConnection)]
    assert closes and closes[0].code == 1009
    assert sinks["call-1"].done.wait(3)
    assert "too big" in sinks["call-1"].closed[0]
    other = Client(srv.port, "/fork/call-2")
    assert any(isinstance(e, AcceptConnection) for e in other.read_events(AcceptConnection))


def test_garbage_instead_of_an_upgrade(server) -> None:
    srv, _sinks = server
    sock = gevent.socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
    with gevent.Timeout(3):
        reply = sock.recv(1000)
    assert reply.startswith(b"HTTP/1.1 400") or reply == b""
    ok = Client(srv.port, "/fork/call-2")
    assert any(isinstance(e, AcceptConnection) for e in ok.read_events(AcceptConnection))
