"""POST /outbound end to end: token, dial policy, audit, then originate over the inbound event socket."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import gevent
import gevent.server
import pytest

from esl_agent.control.originate import Originator
from esl_agent.ops.health import OpsServer
from esl_agent.ops.metrics import make_registry
from esl_agent.policy.api import handle_outbound
from esl_agent.policy.audit import AuditLog, TokenChecker
from esl_agent.policy.dialing import DialPolicy

pytestmark = pytest.mark.wire

POLICY = Path(__file__).parents[2] / "conf" / "policy.yaml"


class FakeInboundFreeSwitch:
    """FreeSWITCH's inbound socket as the inbound-session capture shows it: auth, then bgapi."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.commands: list[str] = []
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    def _handle(self, sock, _addr) -> None:
        sock.sendall(b"Content-Type: auth/request\n\n")
        buf = b""
        while True:
            data = sock.recv(4096)
            if not data:
                return
            buf += data
            while b"\n\n" in buf:
                cmd, buf = buf.split(b"\n\n", 1)
                text = cmd.decode()
                self.commands.append(text)
                if text.startswith("auth "):
                    ok = text == f"auth {self.password}"
                    sock.sendall(b"Content-Type: command/reply\nReply-Text: "
                                 + (b"+OK accepted" if ok else b"-ERR invalid") + b"\n\n")
                elif text.startswith("bgapi "):
                    sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: 7f4db78a-17d7\n"
                                 b"Job-UUID: 7f4db78a-17d7\n\n")
                elif text == "exit":
                    sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK bye\n\n")
                    return


class Metrics:
    def snapshot(self) -> dict[str, float]:
        return dict.fromkeys(("calls_active", "calls_total", "calls_rejected", "commands_failed", "frames_in",
                              "frames_out", "bytes_in", "bytes_out", "fallbacks", "draining"), 0.0)


@pytest.fixture()
def endpoint(tmp_path: Path):
    fs = FakeInboundFreeSwitch("s3cret-pass")
    policy = DialPolicy.from_file(POLICY)
    audit = AuditLog(tmp_path / "audit.log")
    checker = TokenChecker({"crm": "k" * 32})
    originator = Originator("127.0.0.1", fs.server.server_port, "s3cret-pass", "127.0.0.1:8084",
                            caller_id="+43720123456")

    def outbound(body: bytes, auth: str | None, peer: str) -> tuple[int, dict]:
        return handle_outbound(body, auth, policy=policy, audit=audit, checker=checker,
                               start=originator.originate, peer=peer)

    ops = OpsServer(("127.0.0.1", 0), lambda: {"status": "ok"}, make_registry(Metrics()), outbound)
    ops.start()
    yield ops, fs, checker, tmp_path / "audit.log"
    ops.stop()
    fs.server.stop()


def post(port: int, number: str, token: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/outbound", data=json.dumps({"number": number}).encode(),
                                 method="POST")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_allowed_number_is_originated_through_the_outbound_context(endpoint) -> None:
    ops, fs, checker, audit_path = endpoint
    status, reply = post(ops.port, "+4315551234", checker.issue("crm", "+4315551234"))
    assert status == 200, reply
    assert reply["job"] == "Job-UUID: 7f4db78a-17d7"
    bgapi = [c for c in fs.commands if c.startswith("bgapi")]
    assert bgapi == ["bgapi originate {origination_caller_id_number=+43720123456}"
                     "loopback/+4315551234/esl_agent_outbound/XML &socket(127.0.0.1:8084 async full)"]
    assert AuditLog.verify(audit_path) == (True, None)
    assert AuditLog.records(audit_path)[-1]["number"] == "+4315551234"


def test_premium_number_is_refused_audited_and_never_dialled(endpoint) -> None:
    ops, fs, checker, audit_path = endpoint
    status, reply = post(ops.port, "+43900123456", checker.issue("crm", "+43900123456"))
    assert status == 403 and not reply["allowed"]
    assert not [c for c in fs.commands if c.startswith("bgapi")]
    assert AuditLog.records(audit_path)[-1]["number"] == "+43900123456"


def test_missing_or_replayed_token_is_refused(endpoint) -> None:
    ops, fs, checker, _ = endpoint
    assert post(ops.port, "+4315551234", None)[0] == 401
    token = checker.issue("crm", "+4315551234")
    assert post(ops.port, "+4315551234", token)[0] == 200
    assert post(ops.port, "+4315551234", token)[0] == 401  # no replay
    assert len([c for c in fs.commands if c.startswith("bgapi")]) == 1


def test_injection_attempt_never_reaches_freeswitch(endpoint) -> None:
    ops, fs, checker, _ = endpoint
    evil = "+4315551234,sofia/gateway/x/+881"
    status, _ = post(ops.port, evil, checker.issue("crm", evil))
    assert status == 400
    assert not [c for c in fs.commands if c.startswith("bgapi")]
