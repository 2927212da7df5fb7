"""The fail2ban filter, run through Debian's fail2ban-regex against log-line fixtures.

fail2ban-regex comes from the Debian package `fail2ban`; .ci/run installs it and sets
ESL_AGENT_REQUIRE_FAIL2BAN=1, so in CI a missing binary is a failure, never a silent skip.
On a developer machine without it these tests are reported as skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
FILTER = ROOT / "conf" / "fail2ban" / "filter.d" / "freeswitch-esl-agent.conf"
COMMON = Path("/etc/fail2ban/filter.d/common.conf")


def _fail2ban_regex() -> str:
    exe = shutil.which("fail2ban-regex")
    if exe and COMMON.exists():
        return exe
    reason = "fail2ban-regex (Debian package fail2ban) is not installed"
    if os.environ.get("ESL_AGENT_REQUIRE_FAIL2BAN") == "1":
        pytest.fail(f"{reason}, but ESL_AGENT_REQUIRE_FAIL2BAN=1: apt-get install fail2ban")
    pytest.skip(reason)


def _run(log: Path, tmp_path: Path) -> tuple[int, list[str]]:
    exe = _fail2ban_regex()
    # The filter includes common.conf by a path relative to itself: run it from a copy next to it.
    fdir = tmp_path / "filter.d"
    fdir.mkdir()
    shutil.copy(FILTER, fdir / FILTER.name)
    (fdir / "common.conf").symlink_to(COMMON)
    proc = subprocess.run(
        [exe, "-v", str(log), str(fdir / FILTER.name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", proc.stdout, re.M)
    assert m, proc.stdout
    hosts = re.findall(r"^\|\s+(\S+)\s+\w{3} \w{3} \d\d", proc.stdout, re.M)
    return int(m.group(3)), hosts


def test_every_probe_line_matches_with_its_ip(tmp_path: Path) -> None:
    log = FIXTURES / "freeswitch-match.log"
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    matched, hosts = _run(log, tmp_path)
    assert matched == len(lines) == 11
    expected = [ln.rsplit(" ", 1)[1] if "Rejected by" not in ln else ln.split("IP ")[1].split()[0] for ln in lines]
    assert sorted(hosts) == sorted(expected)
    assert "2001:db8::20" in hosts  # IPv6 source from a UUID-prefixed 1.10 line


def test_harmless_lines_do_not_match(tmp_path: Path) -> None:
    log = FIXTURES / "freeswitch-nomatch.log"
    matched, hosts = _run(log, tmp_path)
    assert (matched, hosts) == (0, [])


def test_formats_covered() -> None:
    text = (FIXTURES / "freeswitch-match.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:.]+ \[WARNING\]", text, re.M)  # old format
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:.]+ \d+\.\d+% \[WARNING\]", text, re.M)  # 1.10 CPU column
    assert re.search(r"^[0-9a-f-]{36} \d{4}-", text, re.M)  # UUID-prefixed


def test_jail_parses_with_fail2ban_client(tmp_path: Path) -> None:
    """The rendered jail loads in Debian's fail2ban configuration, with our values."""
    _fail2ban_regex()
    client = shutil.which("fail2ban-client")
    assert client, "fail2ban-client missing next to fail2ban-regex"
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    for extra in (conf / "jail.d").iterdir():
        extra.unlink()  # Debian enables sshd there; its log does not exist here
    shutil.copy(FILTER, conf / "filter.d" / FILTER.name)
    jail = (ROOT / "conf/fail2ban/jail.d/freeswitch-esl-agent.conf").read_text()
    for log in ("/var/log/freeswitch/freeswitch.log", "/var/log/fail2ban.log"):
        local = tmp_path / Path(log).name
        local.write_text("")
        jail = jail.replace(log, str(local))
    (conf / "jail.d" / "freeswitch-esl-agent.conf").write_text(jail)
    proc = subprocess.run([client, "-c", str(conf), "-d"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for jail_name in ("freeswitch-esl-agent", "recidive"):
        assert f"['add', '{jail_name}', 'auto']" in out
        assert f"['set', '{jail_name}', 'addignoreip', '127.0.0.1/8', '::1', '192.0.2.0/24', '198.51.100.16/28']" in out
        assert re.search(rf"\['set', '{jail_name}', 'addaction', '\w+-allports'\]", out)
    assert "['set', 'freeswitch-esl-agent', 'bantime', '86400']" in out
    assert "['set', 'freeswitch-esl-agent', 'maxretry', 5]" in out
    assert "['set', 'recidive', 'bantime', '604800']" in out
    assert "['port', '5060,5061,5080,5081'], ['protocol', 'all']" in out
    assert out.count("['protocol', 'all']") >= 2  # recidive bans UDP too
