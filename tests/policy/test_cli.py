"""The policy, audit and conf sub-commands: output and exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from esl_agent.cli import main
from esl_agent.policy.audit import AuditLog
from esl_agent.policy.dialing import DialPolicy

ROOT = Path(__file__).resolve().parents[2]
POLICY = str(ROOT / "conf" / "policy.yaml")


@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        (["+43 664 1234567"], 0, "ALLOWED '+436641234567' rule=allow:country AT"),
        (["+8816123456789"], 1, "DENIED '+8816123456789' rule=block:+881 GMSS satellite"),
        (["118877"], 1, "DENIED '118877' rule=block:118 AT 118xxx directory"),
        (["+33123456789"], 1, "DENIED '+33123456789' rule=deny:country FR not allowed"),
        (["+4366412,user/1000"], 2, "rule=invalid:dial-string syntax"),
        (["${x}"], 2, "rule=invalid:channel variable"),
        (["+43123456789", "--direction", "in", "--caller", "+436641234567"], 0, "rule=allow:caller country AT"),
        (["+43123456789", "--direction", "in", "--caller", "anonymous"], 1, "rule=deny:anonymous caller"),
        (["+43123456789", "--direction", "in", "--caller", "x$y"], 1, "rule=deny:caller invalid:"),
        (["+43123456789", "--direction", "in"], 1, "rule=deny:anonymous caller"),
    ],
)
def test_policy_check(argv: list[str], code: int, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", *argv, "--policy", POLICY]) == code
    out = capsys.readouterr().out
    assert line in out
    if code:
        assert "spoken: I'm sorry" in out


def test_policy_check_bad_policy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", "+436641234567", "--policy", str(tmp_path / "no.yaml")]) == 2
    assert "cannot read policy" in capsys.readouterr().err


def test_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.log"
    policy = DialPolicy.from_file(POLICY)
    log = AuditLog(path)
    for n in ["+436641234567", "+881612345678", "+49301234567"]:
        log.append("llm", "outbound", n, policy.check(n))
    assert main(["audit", "verify", str(path)]) == 0
    assert "chain intact (3 records)" in capsys.readouterr().out
    path.write_text(path.read_text().replace("+881612345678", "+881612345670"))
    assert main(["audit", "verify", str(path)]) == 1
    assert "chain BROKEN at line 2" in capsys.readouterr().out
    assert main(["audit", "verify", str(tmp_path / "missing.log")]) == 2


def test_conf_render_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "conf"
    assert main(["conf", "render", "--policy", POLICY, "--out", str(out), "--check"]) == 1
    assert main(["conf", "render", "--policy", POLICY, "--out", str(out)]) == 0
    assert "wrote " in capsys.readouterr().out
    assert main(["conf", "render", "--policy", POLICY, "--out", str(out), "--check"]) == 0
    assert (out / "firewall/ufw.sh").stat().st_mode & 0o111
    policy2 = tmp_path / "policy.yaml"
    shutil.copy(POLICY, policy2)
    policy2.write_text(policy2.read_text().replace("max_sessions: 100", "max_sessions: 50"))
    assert main(["conf", "render", "--policy", str(policy2), "--out", str(out), "--check"]) == 1
    assert "stale: " in capsys.readouterr().out


def test_committed_conf_check_passes() -> None:
    assert main(["conf", "render", "--policy", POLICY, "--out", str(ROOT / "conf"), "--check"]) == 0
