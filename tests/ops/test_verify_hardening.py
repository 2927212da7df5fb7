"""verify-hardening reads fs_cli/ufw/ss output correctly (scripted command outputs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from esl_agent.ops.deploy import verify
from esl_agent.policy.dialing import DialPolicy

ROOT = Path(__file__).resolve().parents[2]
POLICY = DialPolicy.from_file(ROOT / "conf" / "policy.yaml")

UFW_GOOD = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)

To                         Action      From
--                         ------      ----
22/tcp (OpenSSH)           ALLOW IN    Anywhere
5060,5061,5080,5081/udp    ALLOW IN    192.0.2.0/24               # esl-agent SIP provider
5060,5061,5080,5081/tcp    ALLOW IN    192.0.2.0/24               # esl-agent SIP provider
5060,5061,5080,5081/udp    ALLOW IN    198.51.100.16/28           # esl-agent SIP provider
5060,5061,5080,5081/tcp    ALLOW IN    198.51.100.16/28           # esl-agent SIP provider
16384:32768/udp            ALLOW IN    Anywhere                   # esl-agent RTP
8021/tcp                   DENY IN     Anywhere
"""
UFW_OPEN = UFW_GOOD + "5080/udp                   ALLOW IN    Anywhere\n"
GATEWAY = """=================================================================================================
Name    \tprovider
Profile \texternal
Scheme  \tDigest
Realm   \tsip.provider.example
State   \t{state}
Status  \tUP (ping)
=================================================================================================
"""


class Scripted:
    def __init__(self, outputs: dict[str, tuple[int, str]]) -> None:
        self.outputs = outputs
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        for key, value in self.outputs.items():
            if key in " ".join(argv):
                return value
        return 127, "not found"


def _outputs(**over: tuple[int, str]) -> dict[str, tuple[int, str]]:
    base = {
        "acl 192.0.2.1 ": (0, "true\n"),
        "acl 203.0.113.254 ": (0, "false\n"),
        "sofia status gateway provider": (0, GATEWAY.format(state="REGED")),
        "ufw status verbose": (0, UFW_GOOD),
        "ss -Hltn": (0, "LISTEN 0 30 127.0.0.1:8021 0.0.0.0:*\n"),
    }
    base.update(over)
    return base


def test_all_green() -> None:
    run = Scripted(_outputs())
    checks = verify(POLICY, run=run)
    assert [c.ok for c in checks] == [True] * 5, [c.line(False) for c in checks]
    assert run.calls[0] == ["fs_cli", "-x", "acl 192.0.2.1 trusted-providers"]
    assert run.calls[1] == ["fs_cli", "-x", "acl 203.0.113.254 trusted-providers"]
    assert checks[3].detail == "4 rule(s), all from provider networks"
    assert checks[0].line(color=False) == "[PASS] acl 192.0.2.1 trusted-providers is true: true"


@pytest.mark.parametrize(
    ("over", "failed", "detail"),
    [
        ({"acl 192.0.2.1 ": (0, "false\n")}, 0, "false"),
        ({"acl 203.0.113.254 ": (0, "true\n")}, 1, "true"),
        ({"sofia status gateway provider": (0, GATEWAY.format(state="FAIL_WAIT"))}, 2, "state FAIL_WAIT"),
        ({"sofia status gateway provider": (0, "Invalid Gateway!\n")}, 2, "state Invalid Gateway!"),
        ({"ufw status verbose": (0, UFW_OPEN)}, 3, "open to 5080/udp from Anywhere"),
        ({"ufw status verbose": (0, "Status: inactive\n")}, 3, "ufw is not active"),
        ({"ss -Hltn": (0, "LISTEN 0 30 0.0.0.0:8021 0.0.0.0:*\n")}, 4, "0.0.0.0:8021"),
        ({"acl 192.0.2.1 ": (1, "")}, 0, "rc 1"),
    ],
)
def test_each_check_can_go_red(over: dict, failed: int, detail: str) -> None:
    checks = verify(POLICY, run=Scripted(_outputs(**over)))
    bad = [i for i, c in enumerate(checks) if not c.ok]
    assert bad == [failed], [c.line(False) for c in checks]
    assert detail in checks[failed].detail
    assert checks[failed].line(color=False).startswith("[FAIL]")


def test_no_ufw_skips_that_check() -> None:
    checks = verify(POLICY, run=Scripted(_outputs()), ufw=False)
    assert len(checks) == 4 and not any("ufw" in c.name for c in checks)


def test_docker_compose_reads_the_conf_path_of_the_policy() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    fs = compose["services"]["freeswitch"]
    conf_dir = POLICY.raw["freeswitch"]["conf_dir"]
    assert fs["network_mode"] == "host"
    # The image entrypoint (which rewrites the conf) is bypassed; FreeSWITCH is told the path.
    assert fs["entrypoint"] == ["/usr/local/freeswitch/bin/freeswitch"]
    cmd = fs["command"]
    assert cmd[cmd.index("-conf") + 1] == conf_dir
    assert f"{conf_dir}:{conf_dir}:ro" in fs["volumes"]
    assert "/opt/esl-agent/var:/opt/esl-agent/var:ro" in fs["volumes"]
    assert "environment" not in fs  # no secret in the compose file
    assert "/etc/freeswitch/secrets/esl_password" in fs["healthcheck"]["test"][1]
