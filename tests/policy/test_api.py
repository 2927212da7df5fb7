"""The outbound-initiation request: token, policy, limits, audit, then (only then) originate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esl_agent.errors import CommandError, PolicyDenied
from esl_agent.ops.cost import Rates
from esl_agent.policy.api import bearer_token, handle_outbound
from esl_agent.policy.audit import AuditLog, TokenChecker
from esl_agent.policy.dialing import Decision, DialPolicy
from esl_agent.policy.limits import OutboundLimits

ROOT = Path(__file__).resolve().parents[2]
POLICY = DialPolicy.from_file(ROOT / "conf" / "policy.yaml")
NOW = 1_800_000_000.0
SECRET = "api-test-secret-0123456789"


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    checker = TokenChecker({"crm": SECRET})
    audit = AuditLog(tmp_path / "audit.log")
    started: list[str] = []

    def start(decision: Decision) -> str:
        started.append(decision.originate_target())
        return "job-1"

    def call(number: str, token: str | None = "issue", **kw):  # type: ignore[no-untyped-def]
        if token == "issue":
            token = checker.issue("crm", number, now=NOW)
        header = f"Bearer {token}" if token else None
        body = kw.pop("body", json.dumps({"number": number}).encode())
        return handle_outbound(
            body, header, policy=POLICY, audit=audit, checker=checker, start=start, peer="127.0.0.1", now=NOW, **kw
        )

    return call, started, audit


def test_allowed_starts_through_outbound_context(env) -> None:  # type: ignore[no-untyped-def]
    call, started, audit = env
    status, reply = call("+43 664 1234567")
    assert (status, reply) == (200, {"allowed": True, "number": "+436641234567", "rule": "allow:country AT",
                                     "job": "job-1"})
    assert started == ["loopback/+436641234567/esl_agent_outbound/XML"]
    (rec,) = AuditLog.records(audit.path)
    assert (rec["actor"], rec["allowed"]) == ("api:127.0.0.1/crm", True)


@pytest.mark.parametrize(
    ("number", "token", "status", "rule"),
    [
        ("+881612345678", "issue", 403, "block:+881 GMSS satellite (8816/8817 Iridium, 8818/8819 Globalstar)"),
        ("+33123456789", "issue", 403, "deny:country FR not allowed"),
        ("+4366412,user/1000", "issue", 400, "invalid:dial-string syntax"),
        ("+436641234567", None, 401, "token:missing"),
        ("+436641234567", "crm.1.abcdefabcdefabcdef.00", 401, "token:bad signature"),
    ],
)
def test_refusals_are_audited_and_start_nothing(env, number, token, status, rule) -> None:  # type: ignore[no-untyped-def]
    call, started, audit = env
    code, reply = call(number, token)
    assert (code, reply["allowed"], reply["rule"]) == (status, False, rule)
    assert started == []
    assert [r["rule"] for r in AuditLog.records(audit.path)] == [rule]
    assert "token" not in json.dumps(reply).replace("token:", "")


def test_replayed_token_refused(tmp_path: Path) -> None:
    checker = TokenChecker({"crm": SECRET})
    audit = AuditLog(tmp_path / "a.log")
    body = json.dumps({"number": "+436641234567"}).encode()
    header = f"Bearer {checker.issue('crm', '+436641234567', now=NOW)}"
    first = handle_outbound(body, header, policy=POLICY, audit=audit, checker=checker, now=NOW)
    again = handle_outbound(body, header, policy=POLICY, audit=audit, checker=checker, now=NOW + 1)
    assert first[0] == 200
    assert (again[0], again[1]["rule"]) == (401, "token:replay")
    assert [r["allowed"] for r in AuditLog.records(audit.path)] == [True, False]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "request body must be JSON"),
        (b'["+436641234567"]', 'expected {"number"'),
        (b'{"number": 436641234567}', 'expected {"number"'),
        (b"x" * 5000, "larger than 4096"),
    ],
)
def test_bad_requests(env, body: bytes, error: str) -> None:  # type: ignore[no-untyped-def]
    call, started, audit = env
    status, reply = call("+436641234567", body=body)
    assert status == 400 and error in reply["error"]
    assert started == [] and AuditLog.records(audit.path) == []


def test_limit_hit_is_429(env) -> None:  # type: ignore[no-untyped-def]
    call, started, _ = env
    limits = OutboundLimits(1, 5, 100.0, Rates.from_policy(POLICY))
    assert call("+436641234567", limits=limits)[0] == 200
    status, reply = call("+436641234568", limits=limits)
    assert (status, reply["rule"]) == (429, "limit:1 calls per minute")
    assert len(started) == 1


def test_originate_failure_is_502_and_frees_the_slot(tmp_path: Path) -> None:
    checker = TokenChecker({"crm": SECRET})
    limits = OutboundLimits(10, 1, 100.0, Rates.from_policy(POLICY))

    def start(decision: Decision) -> str:
        raise CommandError("originate", "-ERR GATEWAY_DOWN")

    status, reply = handle_outbound(
        json.dumps({"number": "+436641234567"}).encode(),
        f"Bearer {checker.issue('crm', '+436641234567', now=NOW)}",
        policy=POLICY, audit=AuditLog(tmp_path / "a.log"), checker=checker, limits=limits, start=start, now=NOW,
    )
    assert status == 502 and reply["error"] == "originate failed: CommandError"
    assert limits.admit("+436641234567", now=NOW) is None


def test_audit_failure_is_503(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    checker = TokenChecker({"crm": SECRET})
    status, reply = handle_outbound(
        json.dumps({"number": "+436641234567"}).encode(),
        f"Bearer {checker.issue('crm', '+436641234567', now=NOW)}",
        policy=POLICY, audit=AuditLog(tmp_path / "f" / "a.log"), checker=checker, now=NOW,
    )
    assert (status, reply["allowed"], reply["rule"]) == (503, False, "audit:write failed")


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.1.x.y", "abc.1.x.y"), ("bearer  t ", "t"), ("Basic abc", None), ("Bearer", None), (None, None)],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_originate_target_only_for_allowed() -> None:
    assert POLICY.check("+41446681800").originate_target() == "loopback/+41446681800/esl_agent_outbound/XML"
    with pytest.raises(PolicyDenied):
        POLICY.check("+979123456789").originate_target()
