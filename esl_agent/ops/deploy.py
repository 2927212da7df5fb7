"""Post-deploy hardening checks (`esl-agent verify-hardening`), run on the server by deploy.sh.

Each check runs one command (fs_cli, ufw, ss) and reads its output:
- `acl <provider-ip> trusted-providers` is true and `acl <outside-ip> trusted-providers` false
- `sofia status gateway <trunk>` is registered (when the trunk registers)
- `ufw status verbose` allows the SIP ports only from the provider networks
- nothing but loopback listens on the event-socket port
fs_cli finds the event-socket password in ~/.fs_cli_conf (written by deploy.sh, mode 0600), so
it never appears on a command line.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from esl_agent.policy.dialing import DialPolicy
from esl_agent.policy.render import provider_networks

Runner = Callable[[Sequence[str]], tuple[int, str]]
GREEN, RED, RESET = "\033[32m", "\033[31m", "\033[0m"


@dataclass(frozen=True)
class Check:
    """One hardening check and its outcome."""

    name: str
    ok: bool
    detail: str

    def line(self, color: bool = True) -> str:
        mark = "PASS" if self.ok else "FAIL"
        if color:
            mark = f"{GREEN if self.ok else RED}{mark}{RESET}"
        return f"[{mark}] {self.name}: {self.detail}"


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    """Run a command with a deadline; (exit code, stdout+stderr)."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, proc.stdout + proc.stderr


def _outside_ip(nets: list) -> str:
    for candidate in ("203.0.113.254", "198.18.0.254", "100.64.0.254", "192.0.2.254"):
        ip = ipaddress.ip_address(candidate)
        if not any(ip in n for n in nets if n.version == 4):
            return candidate
    return "240.0.0.1"


def _provider_ip(nets: list) -> str:
    net = nets[0]
    return str(net.network_address if net.num_addresses == 1 else next(net.hosts()))


def verify(policy: DialPolicy, run: Runner = run_command, fs_cli: str = "fs_cli", ufw: bool = True) -> list[Check]:
    """All checks, in order."""
    nets = provider_networks(policy)
    trunk = policy.raw.get("trunk") or {}
    checks: list[Check] = []

    for ip, want in ((_provider_ip(nets), "true"), (_outside_ip(nets), "false")):
        rc, out = run([fs_cli, "-x", f"acl {ip} trusted-providers"])
        answer = out.strip()
        checks.append(Check(f"acl {ip} trusted-providers is {want}", rc == 0 and answer == want, answer or f"rc {rc}"))

    if trunk.get("register", True):
        name = str(trunk.get("name") or "provider")
        rc, out = run([fs_cli, "-x", f"sofia status gateway {name}"])
        state = re.search(r"^\s*State\s+(\S+)", out, re.M)
        found = state.group(1) if state else (out.strip().splitlines() or [f"rc {rc}"])[0]
        checks.append(Check(f"gateway {name} registered", rc == 0 and found == "REGED", f"state {found}"))

    if ufw:
        rc, out = run(["ufw", "status", "verbose"])
        checks.append(_check_ufw(rc, out, nets, policy))

    esl = str((policy.raw.get("freeswitch") or {}).get("event_socket_listen", "127.0.0.1:8021"))
    port = esl.rpartition(":")[2]
    rc, out = run(["ss", "-Hltn", f"sport = :{port}"])
    bad = [ln for ln in out.splitlines() if ln.strip() and not re.search(r"\s(127\.0\.0\.1|\[::1\]):", ln)]
    checks.append(
        Check(
            f"event socket {port} on loopback only",
            rc == 0 and not bad,
            "loopback only" if rc == 0 and not bad else ("; ".join(bad) or f"rc {rc}"),
        )
    )
    return checks


def _check_ufw(rc: int, out: str, nets: list, policy: DialPolicy) -> Check:
    name = "ufw: SIP ports only from provider networks"
    if rc != 0 or "Status: active" not in out:
        return Check(name, False, "ufw is not active" if rc == 0 else f"rc {rc}")
    ports = {str(p) for p in (policy.raw.get("freeswitch") or {}).get("sip_ports", [5060, 5061, 5080, 5081])}
    wrong = []
    seen = 0
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+(ALLOW|LIMIT)(?: IN)?\s+(.+?)\s*(?:#.*)?$", line.strip())
        if not m:
            continue
        target, _, source = m.groups()
        target_ports = set(re.split(r"[,/ ]", target.split("/")[0] if "/" in target else target))
        if not target_ports & ports:
            continue
        seen += 1
        src = source.replace("(v6)", "").strip()
        try:
            ok = any(ipaddress.ip_network(src, strict=False).subnet_of(n) for n in nets
                     if n.version == ipaddress.ip_network(src, strict=False).version)
        except ValueError:
            ok = False
        if not ok:
            wrong.append(f"{target} from {src}")
    if wrong:
        return Check(name, False, "open to " + ", ".join(wrong))
    if not seen:
        return Check(name, False, "no SIP rule found")
    return Check(name, True, f"{seen} rule(s), all from provider networks")
