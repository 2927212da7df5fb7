"""The daily digest on fixture CDRs and logs, with exact counts; mailing over local SMTP."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from gevent.event import Event
from gevent.server import StreamServer

from esl_agent.cli import main
from esl_agent.ops import digest
from esl_agent.ops.cost import Rates
from esl_agent.policy.audit import AuditLog
from esl_agent.policy.dialing import DialPolicy

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures"
DAY = "2026-11-24"
POLICY = DialPolicy.from_file(ROOT / "conf" / "policy.yaml")


def _audit(path: Path) -> Path:
    noon = datetime(2026, 11, 24, 12, 0).timestamp()
    log = AuditLog(path, clock=lambda: noon)
    for number in ["+41446681800", "+436641234567", "+881612345678", "0900 123 456", "+881612345679"]:
        log.append("llm:x", "outbound", number, POLICY.check(number))
    AuditLog(path, clock=lambda: noon - 86400).append(
        "llm:y", "outbound", "+979123456789", POLICY.check("+979123456789")
    )
    return path


@pytest.fixture
def built(tmp_path: Path) -> digest.Digest:
    return digest.build(
        DAY,
        log=FIX / "freeswitch.log",
        cdr=FIX / "Master.csv",
        audit=_audit(tmp_path / "audit.log"),
        fail2ban_log=FIX / "fail2ban.log",
        rates=Rates.from_policy(POLICY),
    )


def test_probe_counts(built: digest.Digest) -> None:
    assert built.probes == 10
    assert dict(built.probes_by_kind) == {
        "auth-failure": 2,
        "unknown-user": 2,
        "acl-rejected": 3,
        "dialplan-rejected": 3,
    }
    assert built.probes_by_ip.most_common(10) == [
        ("203.0.113.5", 3),
        ("203.0.113.7", 3),
        ("192.0.2.10", 2),
        ("203.0.113.6", 1),
        ("2001:db8::9", 1),
    ]
    assert dict(built.rejections_by_reason) == {"anonymous": 1, "caller-country": 1, "unknown-destination": 1}
    assert dict(built.blocked_destinations) == {"+881": 1, "+43900": 1}
    assert dict(built.bans) == {"203.0.113.5": 1, "203.0.113.7": 2}


def test_call_counts_and_cost(built: digest.Digest) -> None:
    assert (built.inbound_calls, built.inbound_seconds) == (4, 240)
    assert (built.outbound_calls, built.outbound_seconds) == (2, 241)
    # inbound: platform 4 min x 0.012; outbound CH 3 billed min x 0.05 + 3 x 0.012,
    # AT 61 s -> 2 billed min x 0.02 + 61/60 x 0.012
    assert built.cost == pytest.approx(0.048 + 0.15 + 0.036 + 0.04 + 0.0122)
    assert built.cost_per_minute == pytest.approx(0.2862 / (481 / 60))


def test_audit_counts(built: digest.Digest) -> None:
    assert (built.audit_ok, built.outbound_allowed, built.outbound_denied) == (True, 2, 3)
    assert dict(built.denied_by_rule) == {
        "block:+881 GMSS satellite (8816/8817 Iridium, 8818/8819 Globalstar)": 2,
        "block:+43900 AT 0900 premium": 1,
    }


def test_text(built: digest.Digest) -> None:
    text = built.text()
    assert "esl-agent daily digest for 2026-11-24" in text
    assert "SIP probes: 10" in text
    assert "  203.0.113.5" in text
    assert "fail2ban bans: 3" in text
    assert "Inbound calls: 4, 4.0 min" in text
    assert "Outbound calls: 2, 4.0 min" in text
    assert "Outbound attempts audited: 2 allowed, 3 denied" in text
    assert "Estimated cost: 0.29 EUR" in text
    assert "Cost per call minute: 0.0357 EUR" in text
    assert "Audit log chain: intact" in text


def test_cdr_odd_names_do_not_shift_columns() -> None:
    rows = digest.parse_cdr_csv((FIX / "Master.csv").read_text().splitlines(keepends=True))
    assert len(rows) == 8
    assert rows[1].caller_name == 'Evil", "Name, with commas'
    assert (rows[1].caller_number, rows[1].destination, rows[1].billsec) == ("+49301234567", "+43123456789", 90)
    assert rows[2].caller_name == "Line\nBreak" and rows[2].billsec == 30
    assert rows[4].context == "esl_agent_outbound" and rows[4].destination == "+41446681800"


def test_broken_audit_chain_is_reported(tmp_path: Path) -> None:
    path = _audit(tmp_path / "audit.log")
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"allowed":true', '"allowed":false')
    path.write_text("\n".join(lines) + "\n")
    d = digest.build(DAY, audit=path)
    assert (d.audit_ok, d.audit_bad_line) == (False, 2)
    assert "Audit log chain: BROKEN at line 2" in d.text()
    assert d.outbound_allowed == 0  # counts from a broken chain are not trusted


def test_missing_inputs_give_zero_digest(tmp_path: Path) -> None:
    d = digest.build(DAY, log=tmp_path / "none.log", cdr=tmp_path / "none.csv")
    assert (d.probes, d.inbound_calls, d.cost) == (0, 0, 0.0)


class FakeSmtp:
    """A loopback SMTP server that records one conversation."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.data = ""
        self.done = Event()
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    def _handle(self, sock, _addr) -> None:
        f = sock.makefile("rwb")

        def send(line: str) -> None:
            f.write(line.encode() + b"\r\n")
            f.flush()

        send("220 fake ESMTP")
        while True:
            raw = f.readline()
            if not raw:
                break
            line = raw.decode().rstrip("\r\n")
            self.commands.append(line.split(" ")[0].upper())
            verb = line[:4].upper()
            if verb == "EHLO":
                send("250-fake")
                send("250 SIZE 1000000")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                send("250 OK")
            elif verb == "DATA":
                send("354 go on")
                chunks = []
                while True:
                    dl = f.readline()
                    if dl in (b".\r\n", b""):
                        break
                    chunks.append(dl.decode())
                self.data = "".join(chunks)
                send("250 queued")
            elif verb == "QUIT":
                send("221 bye")
                break
            else:
                send("502 no")
        self.done.set()


def test_mail_over_local_smtp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    smtp = FakeSmtp()
    smtp.server.start()
    try:
        port = smtp.server.server_port
        rc = main(
            [
                "digest", "--date", DAY, "--log", str(FIX / "freeswitch.log"), "--cdr", str(FIX / "Master.csv"),
                "--audit", str(_audit(tmp_path / "audit.log")), "--fail2ban-log", str(FIX / "fail2ban.log"),
                "--policy", str(ROOT / "conf" / "policy.yaml"), "--smtp", f"127.0.0.1:{port}",
                "--mail-to", "ops@example.org", "--mail-from", "pbx@example.org",
            ]
        )
        assert smtp.done.wait(timeout=10)
    finally:
        smtp.server.stop()
    assert rc == 0
    out = capsys.readouterr().out
    assert "SIP probes: 10" in out and "mailed to ops@example.org" in out
    assert smtp.commands[:4] == ["EHLO", "MAIL", "RCPT", "DATA"]
    assert "Subject: esl-agent digest 2026-11-24: 10 probes, 3 denied" in smtp.data
    assert "To: ops@example.org" in smtp.data
    assert "Estimated cost: 0.29 EUR" in smtp.data


def test_digest_cli_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["digest", "--date", "24.11.2026"]) == 2
    assert "expected YYYY-MM-DD" in capsys.readouterr().err


def test_smtp_needs_recipient(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["digest", "--date", DAY, "--log", str(tmp_path / "x"), "--cdr", str(tmp_path / "y"),
            "--audit", str(tmp_path / "z"), "--smtp", "127.0.0.1:25"]
    assert main(args) == 2
    assert "--smtp needs --mail-to" in capsys.readouterr().err


F2B_FIXTURES = ROOT / "tests" / "policy" / "fixtures"


def _day_of(line: str) -> str:
    import re

    m = re.search(r"(?:(\d{4})-)?(\d\d-\d\d)[ T]\d\d:\d\d:\d\d\.\d+ (?:\d+\.\d+% )?\[", line)
    assert m, line
    return f"{m.group(1) or '2026'}-{m.group(2)}"


@pytest.mark.parametrize(
    "line", [ln for ln in (F2B_FIXTURES / "freeswitch-match.log").read_text().splitlines() if ln.strip()]
)
def test_digest_counts_every_line_fail2ban_bans_on(tmp_path: Path, line: str) -> None:
    """The digest and the fail2ban filter agree: each ban-worthy line is one probe from its IP."""
    log = tmp_path / "fs.log"
    log.write_text(line + "\n")
    d = digest.build(_day_of(line), log=log)
    assert d.probes == 1, line
    assert next(iter(d.probes_by_ip)) in line


def test_digest_ignores_the_lines_fail2ban_ignores(tmp_path: Path) -> None:
    lines = [ln for ln in (F2B_FIXTURES / "freeswitch-nomatch.log").read_text().splitlines() if ln.strip()]
    for line in lines:
        log = tmp_path / "fs.log"
        log.write_text(line + "\n")
        assert digest.build(_day_of(line), log=log).probes == 0, line
