"""Trunk password rotation: 0600 file, gateway re-registered, the secret never shown."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from esl_agent.cli import main
from esl_agent.ops import deploy as deploy_mod
from esl_agent.policy.dialing import DialPolicy
from esl_agent.policy.secrets import RotationError, rotate_trunk_password, write_secret

ROOT = Path(__file__).resolve().parents[2]
SECRET = "n3w-Tr#nk-p4ss!"


def _policy(tmp_path: Path) -> DialPolicy:
    raw = dict(DialPolicy.from_file(ROOT / "conf" / "policy.yaml").raw)
    raw["trunk"] = {**raw["trunk"], "password_file": str(tmp_path / "trunk_password")}
    return DialPolicy.from_mapping(raw, source="test-policy")


class Gateway:
    """Scripted fs_cli: records argv, answers gateway status from a list of states."""

    def __init__(self, states: list[str], fail: str = "") -> None:
        self.states = states
        self.fail = fail
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        cmd = argv[-1]
        if self.fail and cmd.startswith(self.fail):
            return 0, "-ERR no such gateway\n"
        if cmd.startswith("sofia status gateway"):
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return 0, f"Name    \tprovider\nState   \t{state}\n"
        return 0, "+OK\n"


def test_rotation_writes_0600_and_reregisters(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "trunk_password").write_text("old")
    gw = Gateway(["UNREGED", "TRYING", "REGED"])
    sleeps: list[float] = []
    with caplog.at_level(logging.DEBUG):
        state = rotate_trunk_password(_policy(tmp_path), SECRET, run=gw, sleep=sleeps.append, clock=lambda: 0.0)
    assert state == "REGED"
    target = tmp_path / "trunk_password"
    assert target.read_text() == SECRET
    assert target.stat().st_mode & 0o777 == 0o600
    assert [c[-1] for c in gw.calls[:3]] == [
        "reloadxml",
        "sofia profile external killgw provider",
        "sofia profile external rescan",
    ]
    assert [c[-1] for c in gw.calls[3:]] == ["sofia status gateway provider"] * 3
    assert sleeps == [1.0, 1.0]
    assert not any(SECRET in " ".join(c) for c in gw.calls)
    assert SECRET not in caplog.text and "trunk secret rewritten" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["trunk_password"]  # no temp file left


def test_fs_cli_error_is_reported_without_secret(tmp_path: Path) -> None:
    gw = Gateway(["REGED"], fail="sofia profile external killgw")
    with pytest.raises(RotationError) as info:
        rotate_trunk_password(_policy(tmp_path), SECRET, run=gw)
    assert "killgw provider" in str(info.value) and SECRET not in str(info.value)


def test_registration_deadline(tmp_path: Path) -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(RotationError, match="did not register within 5 s \\(state FAIL_WAIT\\)"):
        rotate_trunk_password(
            _policy(tmp_path), SECRET, run=Gateway(["FAIL_WAIT"]), deadline_s=5, sleep=sleep, clock=lambda: now[0]
        )


@pytest.mark.parametrize("bad", ["", "two\nlines", "nul\0byte"])
def test_bad_secret_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RotationError, match="one non-empty line"):
        write_secret(tmp_path / "x", bad)
    assert not (tmp_path / "x").exists()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RotationError, match="does not exist"):
        write_secret(tmp_path / "nope" / "x", SECRET)


def test_cli_reads_stdin_and_never_prints_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        (ROOT / "conf/policy.yaml").read_text().replace(
            "/etc/freeswitch/secrets/trunk_password", str(tmp_path / "trunk_password")
        )
    )
    gw = Gateway(["REGED"])
    monkeypatch.setattr(deploy_mod, "run_command", gw)
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    assert main(["trunk", "rotate-password", "--policy", str(policy_file)]) == 0
    out = capsys.readouterr()
    assert "trunk password rotated; gateway state REGED" in out.out
    assert SECRET not in out.out + out.err
    assert (tmp_path / "trunk_password").read_text() == SECRET
