"""scripts/deploy.sh into a local tree standing in for the server, dry runs, and the ssh path
with stand-in ssh/rsync binaries that record their arguments (no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from esl_agent.policy import render
from esl_agent.policy.dialing import DialPolicy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "deploy.sh"


def _deploy(*args: str, env: dict[str, str] | None = None, tmp: Path) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "PYTHON": sys.executable,
        **(env or {}),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=120, check=False
    )


def _fake_bin(tmp: Path) -> Path:
    """ssh and rsync stand-ins that append their argv to calls.log and succeed."""
    bindir = tmp / "fakebin"
    bindir.mkdir()
    for name in ("ssh", "rsync"):
        exe = bindir / name
        exe.write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp}/calls.log"\n')
        exe.chmod(0o755)
    return bindir


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("deploy")
    root = tmp / "server"
    proc = _deploy(env={"DEPLOY_ROOT": str(root)}, tmp=tmp)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return root, proc.stdout


def test_rendered_conf_landed_where_freeswitch_reads_it(tree: tuple[Path, str]) -> None:
    root, _ = tree
    files = render.render(DialPolicy.from_file(ROOT / "conf" / "policy.yaml"))
    for rel, text in files.items():
        if rel.startswith("freeswitch/"):
            assert (root / "etc" / rel).read_text() == text, rel
    assert (root / "etc/fail2ban/filter.d/freeswitch-esl-agent.conf").read_text() == files[
        "fail2ban/filter.d/freeswitch-esl-agent.conf"
    ]
    assert (root / "etc/fail2ban/jail.d/freeswitch-esl-agent.conf").exists()
    assert (root / "etc/esl-agent/firewall/ufw.sh").read_text() == files["firewall/ufw.sh"]
    assert (root / "opt/esl-agent/conf/policy.yaml").read_bytes() == (ROOT / "conf/policy.yaml").read_bytes()


def test_code_and_units_landed(tree: tuple[Path, str]) -> None:
    root, _ = tree
    app = root / "opt/esl-agent/app"
    assert (app / "esl_agent/policy/dialing.py").read_bytes() == (ROOT / "esl_agent/policy/dialing.py").read_bytes()
    assert (app / "setup.cfg").exists() and (app / "conf/agent.example.yaml").exists()
    for absent in ("tests", ".venv", ".git", "var", "conf/policy.yaml"):
        assert not (app / absent).exists(), absent
    assert not list(app.rglob("__pycache__"))
    for unit in ("esl-agent.service", "esl-agent-digest.service", "esl-agent-digest.timer"):
        assert (root / "etc/systemd/system" / unit).read_bytes() == (ROOT / "conf/systemd" / unit).read_bytes()


def test_no_secret_travels(tree: tuple[Path, str]) -> None:
    root, _ = tree
    assert not (root / "etc/freeswitch/secrets").exists()
    assert not (root / "etc/esl-agent/agent.yaml").exists()
    assert not (root / "etc/esl-agent/env").exists()


def test_post_install_steps_in_order(tree: tuple[Path, str]) -> None:
    root, out = tree
    script = (root / "var/lib/esl-agent/post-install.sh").read_text()
    assert "post-install.sh" in out and "not run" in out
    order = [
        "useradd --system",
        "chmod o-rwx /var/log/freeswitch",  # freeswitch.xml.fsxml holds the expanded secrets
        "SupplementaryGroups=freeswitch",
        "install -d -m 0700 /etc/freeswitch/secrets",
        "python3 -m venv /opt/esl-agent/.venv",
        "pip install -q --upgrade /opt/esl-agent/app",
        "systemctl daemon-reload",
        "systemctl enable esl-agent.service esl-agent-digest.timer",
        "sh /etc/esl-agent/firewall/ufw.sh",
        "fail2ban-client reload",
        "fs_cli -x reloadxml",
        "fs_cli -x reloadacl",
        'fs_cli -x "sofia profile external rescan"',
        "systemctl restart esl-agent.service",
        "esl-agent verify-hardening --policy /opt/esl-agent/conf/policy.yaml --no-color",
    ]
    positions = [script.index(s) for s in order]
    assert positions == sorted(positions)
    assert "systemctl restart freeswitch" in script  # when the event-socket secret is new
    assert "ClueCon" not in script and "1234" not in script
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path)
    root = tmp_path / "server"
    proc = _deploy(
        "deploy@pbx.example",
        env={"DRY_RUN": "1", "PATH": f"{fake}:{os.environ['PATH']}", "DEPLOY_ROOT": ""},
        tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "calls.log").exists()
    assert not root.exists()
    out = proc.stdout
    assert "==> render conf from conf/policy.yaml and lint it" in out
    assert f"+ {sys.executable} -m esl_agent conf render --policy conf/policy.yaml" in out
    for t in ("opt/esl-agent/app", "etc/freeswitch", "etc/fail2ban/jail.d", "etc/systemd/system"):
        assert f"deploy@pbx.example:/{t}/" in out
    assert "+ ssh deploy@pbx.example sudo sh /var/lib/esl-agent/post-install.sh" in out
    assert "    | systemctl restart esl-agent.service" in out  # the server script is shown too
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith("esl-agent-deploy.")]
    assert leftovers == []


def test_remote_mode_commands(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path)
    proc = _deploy(
        "deploy@pbx.example", env={"PATH": f"{fake}:{os.environ['PATH']}"}, tmp=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    rsyncs = [c for c in calls if c.startswith("rsync ")]
    dests = [c.rsplit(" ", 1)[1] for c in rsyncs]
    assert "deploy@pbx.example:/etc/freeswitch/" in dests
    assert "deploy@pbx.example:/opt/esl-agent/app/" in dests
    assert not any(d == "deploy@pbx.example:/" for d in dests)  # never onto / itself
    delete = [c for c in rsyncs if "--delete" in c]
    assert len(delete) == 1 and delete[0].endswith("deploy@pbx.example:/opt/esl-agent/app/")
    assert calls[-1] == "ssh deploy@pbx.example sudo sh /var/lib/esl-agent/post-install.sh"


def test_nftables_and_docker_modes(tmp_path: Path) -> None:
    root = tmp_path / "server"
    proc = _deploy(env={"DEPLOY_ROOT": str(root), "FIREWALL": "nftables", "FREESWITCH": "docker"}, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/nftables.d/esl-agent.nft").read_text().startswith("#!/usr/sbin/nft -f")
    assert (root / "opt/esl-agent/app/docker-compose.yml").exists()
    script = (root / "var/lib/esl-agent/post-install.sh").read_text()
    assert "nft -f /etc/nftables.d/esl-agent.nft" in script
    assert "--no-ufw --fs-cli /usr/local/sbin/esl-agent-fs-cli" in script
    assert "/usr/local/sbin/esl-agent-fs-cli -x reloadxml" in script


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "usage: make deploy HOST=user@host"),
        (("x@y;rm -rf /",), {}, "refusing odd HOST value"),
        (("-oProxyCommand=evil",), {}, "refusing odd HOST value"),
        (("x@y",), {"FIREWALL": "iptables"}, "FIREWALL must be"),
        (("x@y",), {"POLICY": "nope.yaml"}, "no policy file nope.yaml"),
    ],
)
def test_refusals(tmp_path: Path, args: tuple, env: dict, message: str) -> None:
    proc = _deploy(*args, env={"DRY_RUN": "1", **env}, tmp=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_stale_or_bad_policy_stops_the_deploy(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text((ROOT / "conf/policy.yaml").read_text().replace("default_country: AT", "default_country: XX"))
    proc = _deploy(env={"DEPLOY_ROOT": str(tmp_path / "server"), "POLICY": str(bad)}, tmp=tmp_path)
    assert proc.returncode != 0
    assert "unknown country 'XX'" in proc.stderr
    assert not (tmp_path / "server").exists()
