"""Render FreeSWITCH XML, firewall rules and fail2ban files from conf/policy.yaml.

`render(policy)` returns {relative path: file text}; `write(files, out_dir)` writes them and
`stale(policy, out_dir)` lists the files on disk that differ from a fresh render (CI fails then).
The dialplan regexes come from the same DialPolicy methods the controller uses, so the dialplan
and the controller give the same verdict on every number (tests/policy checks 40+ numbers).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from esl_agent.errors import ConfigError
from esl_agent.policy.dialing import ANONYMOUS_REGEX, COUNTRIES, OUTBOUND_CONTEXT, DialPolicy

# A missing secrets file must never mean an empty password: fall back to an unusable random one.
_RANDOM = "od -An -N18 -tx1 /dev/urandom | tr -d ' \\n'"


def _secret_cmd(var: str, path: str) -> str:
    # FreeSWITCH's pre-processor reads these lines as raw text (no XML entity decoding), so the
    # shell command is written verbatim; a raw '>' is legal inside an XML attribute.
    if any(ch in path for ch in "\"<&'$`;|\n ") or not path.startswith("/"):
        raise ConfigError(f"secret file path must be a plain absolute path, got {path!r}")
    return f'<X-PRE-PROCESS cmd="exec-set" data="{var}=cat {path} 2>/dev/null || {_RANDOM}"/>'


HEADER = "Rendered by `esl-agent conf render` from conf/policy.yaml. Do not edit: edit the policy."
LOG_TAG = "esl-agent REJECT"  # our own rejection lines; conf/fail2ban matches them


def _a(value: Any) -> str:
    """An XML attribute value, quoted and escaped."""
    return quoteattr(str(value))


def _section(policy: DialPolicy, name: str) -> Mapping[str, Any]:
    value = policy.raw.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{policy.source}: {name}: expected a mapping")
    return value


def provider_networks(policy: DialPolicy) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The trunk provider's CIDRs, validated."""
    cidrs = _section(policy, "trunk").get("cidrs") or []
    nets = []
    for i, cidr in enumerate(cidrs):
        try:
            nets.append(ipaddress.ip_network(str(cidr), strict=True))
        except ValueError as exc:
            raise ConfigError(f"{policy.source}: trunk.cidrs[{i}]: {exc}") from None
    if not nets:
        raise ConfigError(f"{policy.source}: trunk.cidrs: name at least one provider network")
    return nets


def _fs(policy: DialPolicy) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "conf_dir": "/etc/freeswitch",
        "log_file": "/var/log/freeswitch/freeswitch.log",
        "controller": "127.0.0.1:8084",
        "event_socket_listen": "127.0.0.1:8021",
        "sessions_per_second": 10,
        "max_sessions": 100,
        "sip_ports": [5060, 5061, 5080, 5081],
        "rtp_start": 16384,
        "rtp_end": 32768,
        "apology_file": "ivr/ivr-call_cannot_be_completed_as_dialed.wav",
        "fallback_extension": "",
        "fallback_context": "esl_agent_fallback",
        "voicemail_box": "",
    }
    defaults.update(_section(policy, "freeswitch"))
    host, _, port = str(defaults["event_socket_listen"]).rpartition(":")
    if host not in ("127.0.0.1", "::1"):
        raise ConfigError(f"{policy.source}: freeswitch.event_socket_listen: must be loopback, got {host!r}")
    defaults["esl_host"], defaults["esl_port"] = host, int(port)
    return defaults


# --------------------------------------------------------------------------------------------
# FreeSWITCH


def acl_conf(policy: DialPolicy) -> str:
    nodes = "\n".join(f'      <node type="allow" cidr={_a(n)}/>' for n in provider_networks(policy))
    return f"""<!-- {HEADER} -->
<!-- Every list says default="deny" explicitly: FreeSWITCH lists default to allow otherwise. -->
<configuration name="acl.conf" description="Network Lists">
  <network-lists>
    <list name="trusted-providers" default="deny">
{nodes}
    </list>
    <list name="esl-clients" default="deny">
      <node type="allow" cidr="127.0.0.1/32"/>
      <node type="allow" cidr="::1/128"/>
    </list>
    <list name="domains" default="deny">
    </list>
  </network-lists>
</configuration>
"""


def event_socket_conf(policy: DialPolicy) -> str:
    fs = _fs(policy)
    return f"""<!-- {HEADER} -->
<!-- Loopback only, an inbound ACL, and the password read from a secrets file at load time
     (never ClueCon). The controller's outbound socket (dialplan `socket`) does not use this. -->
<configuration name="event_socket.conf" description="Socket Client">
  <settings>
    <param name="nat-map" value="false"/>
    <param name="listen-ip" value={_a(fs["esl_host"])}/>
    <param name="listen-port" value={_a(fs["esl_port"])}/>
    <param name="password" value="$${{esl_password}}"/>
    <param name="apply-inbound-acl" value="esl-clients"/>
  </settings>
</configuration>
"""


def switch_conf(policy: DialPolicy) -> str:
    fs = _fs(policy)
    return f"""<!-- {HEADER} -->
<configuration name="switch.conf" description="Core Configuration">
  <cli-keybindings>
    <key name="1" value="help"/>
    <key name="2" value="status"/>
    <key name="3" value="show channels"/>
    <key name="4" value="show calls"/>
    <key name="5" value="sofia status"/>
    <key name="6" value="reloadxml"/>
    <key name="7" value="console loglevel 0"/>
    <key name="8" value="console loglevel 7"/>
    <key name="9" value="sofia status profile internal"/>
    <key name="10" value="sofia profile internal siptrace on"/>
    <key name="11" value="sofia profile internal siptrace off"/>
    <key name="12" value="version"/>
  </cli-keybindings>
  <default-ptimes>
  </default-ptimes>
  <settings>
    <param name="colorize-console" value="true"/>
    <param name="dialplan-timestamps" value="false"/>
    <param name="max-db-handles" value="50"/>
    <param name="db-handle-timeout" value="10"/>
    <!-- Lowered from the stock 1000 / 30: a flood must not become a bill. -->
    <param name="max-sessions" value={_a(fs["max_sessions"])}/>
    <param name="sessions-per-second" value={_a(fs["sessions_per_second"])}/>
    <param name="loglevel" value="info"/>
    <param name="mailer-app" value="sendmail"/>
    <param name="mailer-app-args" value="-t"/>
    <param name="dump-cores" value="no"/>
    <param name="rtp-start-port" value={_a(fs["rtp_start"])}/>
    <param name="rtp-end-port" value={_a(fs["rtp_end"])}/>
    <param name="rtp-enable-zrtp" value="false"/>
  </settings>
</configuration>
"""


_SDES = "|".join(
    ["AEAD_AES_256_GCM_8", "AEAD_AES_128_GCM_8", "AES_CM_256_HMAC_SHA1_80", "AES_CM_192_HMAC_SHA1_80",
     "AES_CM_128_HMAC_SHA1_80", "AES_CM_256_HMAC_SHA1_32", "AES_CM_192_HMAC_SHA1_32",
     "AES_CM_128_HMAC_SHA1_32", "AES_CM_128_NULL_AUTH"]
)


# The stock vanilla vars.xml ring tones (dialplans and conference configs refer to them).
_RING_TONES = {
    "au": "%(400,200,383,417);%(400,2000,383,417)", "be": "%(1000,3000,425)", "ca": "%(2000,4000,440,480)",
    "cn": "%(1000,4000,450)", "cy": "%(1500,3000,425)", "cz": "%(1000,4000,425)", "de": "%(1000,4000,425)",
    "dk": "%(1000,4000,425)", "dz": "%(1500,3500,425)", "eg": "%(2000,1000,475,375)",
    "es": "%(1500,3000,425)", "fi": "%(1000,4000,425)", "fr": "%(1500,3500,440)",
    "hk": "%(400,200,440,480);%(400,3000,440,480)", "hu": "%(1250,3750,425)", "il": "%(1000,3000,400)",
    "in": "%(400,200,425,375);%(400,2000,425,375)", "jp": "%(1000,2000,420,380)",
    "ko": "%(1000,2000,440,480)", "pk": "%(1000,2000,400)", "pl": "%(1000,4000,425)",
    "ro": "%(1850,4150,475,425)", "rs": "%(1000,4000,425)", "ru": "%(800,3200,425)",
    "sa": "%(1200,4600,425)", "tr": "%(2000,4000,450)", "uk": "%(400,200,400,450);%(400,2000,400,450)",
    "us": "%(2000,4000,440,480)",
}
_RINGS = "\n".join(
    [f'  <X-PRE-PROCESS cmd="set" data="{cc}-ring={tone}"/>' for cc, tone in _RING_TONES.items()]
    + ['  <X-PRE-PROCESS cmd="set" data="bong-ring=v=-7;%(100,0,941.0,1477.0);v=-7;>=2;+=.1;%(1400,0,350,440)"/>']
)


def vars_xml(policy: DialPolicy) -> str:
    conf = _fs(policy)["conf_dir"]
    secrets = f"{conf}/secrets"
    return f"""<!-- {HEADER} -->
<!-- Replaces the stock vars.xml: no default_password=1234. Secrets are read at load time from
     files under {secrets}/ (mode 0600, owner freeswitch) that deploy.sh never overwrites. -->
<include>
  {_secret_cmd("default_password", secrets + "/default_password")}
  {_secret_cmd("esl_password", secrets + "/esl_password")}
  <X-PRE-PROCESS cmd="set" data="sound_prefix=$${{sounds_dir}}/en/us/callie"/>
  <X-PRE-PROCESS cmd="set" data="domain=$${{local_ip_v4}}"/>
  <X-PRE-PROCESS cmd="set" data="domain_name=$${{domain}}"/>
  <X-PRE-PROCESS cmd="set" data="hold_music=local_stream://moh"/>
  <X-PRE-PROCESS cmd="set" data="use_profile=external"/>
  <X-PRE-PROCESS cmd="set" data="rtp_sdes_suites={_SDES}"/>
  <X-PRE-PROCESS cmd="set" data="global_codec_prefs=PCMA,PCMU,OPUS"/>
  <X-PRE-PROCESS cmd="set" data="outbound_codec_prefs=PCMA,PCMU,OPUS"/>
  <X-PRE-PROCESS cmd="set" data="xmpp_client_profile=xmppc"/>
  <X-PRE-PROCESS cmd="set" data="xmpp_server_profile=xmpps"/>
  <X-PRE-PROCESS cmd="set" data="bind_server_ip=auto"/>
  <X-PRE-PROCESS cmd="stun-set" data="external_rtp_ip=host:$${{local_ip_v4}}"/>
  <X-PRE-PROCESS cmd="stun-set" data="external_sip_ip=host:$${{local_ip_v4}}"/>
  <X-PRE-PROCESS cmd="set" data="unroll_loops=true"/>
  <X-PRE-PROCESS cmd="set" data="outbound_caller_name=FreeSWITCH"/>
  <X-PRE-PROCESS cmd="set" data="outbound_caller_id=0000000000"/>
  <X-PRE-PROCESS cmd="set" data="call_debug=false"/>
  <X-PRE-PROCESS cmd="set" data="console_loglevel=info"/>
  <X-PRE-PROCESS cmd="set" data="default_areacode=1"/>
  <X-PRE-PROCESS cmd="set" data="default_country={policy.default_country}"/>
  <X-PRE-PROCESS cmd="set" data="presence_privacy=false"/>
{_RINGS}
  <X-PRE-PROCESS cmd="set" data="beep=%(1000,0,640)"/>
  <X-PRE-PROCESS cmd="set" data="sit=%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"/>
  <X-PRE-PROCESS cmd="set" data="default_provider=example.com"/>
  <X-PRE-PROCESS cmd="set" data="default_provider_username=joeuser"/>
  <X-PRE-PROCESS cmd="set" data="default_provider_password=unused"/>
  <X-PRE-PROCESS cmd="set" data="default_provider_from_domain=example.com"/>
  <X-PRE-PROCESS cmd="set" data="default_provider_register=false"/>
  <X-PRE-PROCESS cmd="set" data="default_provider_contact=5000"/>
  <X-PRE-PROCESS cmd="set" data="sip_tls_version=tlsv1.2"/>
  <X-PRE-PROCESS cmd="set" data="sip_tls_ciphers=ALL:!ADH:!LOW:!EXP:!MD5:@STRENGTH"/>
  <X-PRE-PROCESS cmd="set" data="internal_auth_calls=true"/>
  <X-PRE-PROCESS cmd="set" data="internal_sip_port=5060"/>
  <X-PRE-PROCESS cmd="set" data="internal_tls_port=5061"/>
  <X-PRE-PROCESS cmd="set" data="internal_ssl_enable=false"/>
  <X-PRE-PROCESS cmd="set" data="external_auth_calls=false"/>
  <X-PRE-PROCESS cmd="set" data="external_sip_port=5080"/>
  <X-PRE-PROCESS cmd="set" data="external_tls_port=5081"/>
  <X-PRE-PROCESS cmd="set" data="external_ssl_enable=false"/>
  <X-PRE-PROCESS cmd="set" data="rtp_video_max_bandwidth_in=3mb"/>
  <X-PRE-PROCESS cmd="set" data="rtp_video_max_bandwidth_out=3mb"/>
  <X-PRE-PROCESS cmd="set" data="suppress_cng=true"/>
  <X-PRE-PROCESS cmd="set" data="rtp_liberal_dtmf=true"/>
  <X-PRE-PROCESS cmd="set" data="video_mute_png=$${{images_dir}}/default-mute.png"/>
  <X-PRE-PROCESS cmd="set" data="video_no_avatar_png=$${{images_dir}}/default-avatar.png"/>
</include>
"""


def external_profile(policy: DialPolicy) -> str:
    return f"""<!-- {HEADER} -->
<!-- The provider-facing profile: only the provider's networks may send INVITEs
     (apply-inbound-acl), auth failures are logged for fail2ban, calls land in context public. -->
<profile name="external">
  <gateways>
    <X-PRE-PROCESS cmd="include" data="external/*.xml"/>
  </gateways>
  <aliases>
  </aliases>
  <domains>
    <domain name="all" alias="false" parse="true"/>
  </domains>
  <settings>
    <param name="debug" value="0"/>
    <param name="sip-trace" value="no"/>
    <param name="sip-capture" value="no"/>
    <param name="rfc2833-pt" value="101"/>
    <param name="sip-port" value="$${{external_sip_port}}"/>
    <param name="dialplan" value="XML"/>
    <param name="context" value="public"/>
    <param name="dtmf-duration" value="2000"/>
    <param name="inbound-codec-prefs" value="PCMA,PCMU,OPUS"/>
    <param name="outbound-codec-prefs" value="PCMA,PCMU,OPUS"/>
    <param name="hold-music" value="$${{hold_music}}"/>
    <param name="rtp-timer-name" value="soft"/>
    <param name="local-network-acl" value="localnet.auto"/>
    <param name="manage-presence" value="false"/>
    <param name="apply-inbound-acl" value="trusted-providers"/>
    <param name="log-auth-failures" value="true"/>
    <param name="auth-calls" value="$${{external_auth_calls}}"/>
    <param name="inbound-codec-negotiation" value="generous"/>
    <param name="nonce-ttl" value="60"/>
    <param name="inbound-late-negotiation" value="true"/>
    <param name="inbound-zrtp-passthru" value="false"/>
    <param name="rtp-ip" value="$${{local_ip_v4}}"/>
    <param name="sip-ip" value="$${{local_ip_v4}}"/>
    <param name="ext-rtp-ip" value="auto-nat"/>
    <param name="ext-sip-ip" value="auto-nat"/>
    <param name="rtp-timeout-sec" value="300"/>
    <param name="rtp-hold-timeout-sec" value="1800"/>
    <param name="tls" value="$${{external_ssl_enable}}"/>
    <param name="tls-only" value="false"/>
    <param name="tls-bind-params" value="transport=tls"/>
    <param name="tls-sip-port" value="$${{external_tls_port}}"/>
    <param name="tls-passphrase" value=""/>
    <param name="tls-verify-date" value="true"/>
    <param name="tls-verify-policy" value="none"/>
    <param name="tls-verify-depth" value="2"/>
    <param name="tls-verify-in-subjects" value=""/>
    <param name="tls-version" value="$${{sip_tls_version}}"/>
  </settings>
</profile>
"""


def gateway_xml(policy: DialPolicy) -> str:
    trunk = _section(policy, "trunk")
    name = str(trunk.get("name") or "provider")
    user_file = str(trunk.get("username_file") or "/etc/freeswitch/secrets/trunk_username")
    pass_file = str(trunk.get("password_file") or "/etc/freeswitch/secrets/trunk_password")
    register = "true" if trunk.get("register", True) else "false"
    return f"""<!-- {HEADER} -->
<!-- Credentials come from files on the server (mode 0600), never from this repository. -->
<include>
  {_secret_cmd("esl_agent_trunk_username", user_file)}
  {_secret_cmd("esl_agent_trunk_password", pass_file)}
  <gateway name={_a(name)}>
    <param name="username" value="$${{esl_agent_trunk_username}}"/>
    <param name="password" value="$${{esl_agent_trunk_password}}"/>
    <param name="proxy" value={_a(trunk.get("proxy") or "sip.provider.example")}/>
    <param name="register" value={_a(register)}/>
    <param name="expire-seconds" value="600"/>
    <param name="retry-seconds" value="30"/>
    <param name="caller-id-in-from" value="true"/>
  </gateway>
</include>
"""


def _reject(reason: str, cause: str = "CALL_REJECTED") -> str:
    # Only the reason and the network IP in the line: caller-controlled text never reaches the log,
    # so nobody can smuggle "from <someone else's IP>" into what fail2ban reads.
    return (
        f'        <action application="log" data="WARNING {LOG_TAG} {reason} from ${{sip_network_ip}}"/>\n'
        f'        <action application="hangup" data="{cause}"/>'
    )


def did_regex(policy: DialPolicy) -> str:
    """Destination regex of the inbound dialplan: one of our DIDs, with or without '+'."""
    if not policy.dids:
        raise ConfigError(f"{policy.source}: dids: name at least one DID")
    return r"^\+?(?:" + "|".join(d[1:] for d in policy.dids) + ")$"


def public_dialplan(policy: DialPolicy) -> str:
    fs = _fs(policy)
    did = did_regex(policy)
    if fs["fallback_extension"]:
        fallback = (
            f'        <action application="transfer" '
            f'data={_a(str(fs["fallback_extension"]) + " XML " + str(fs["fallback_context"]))}/>'
        )
    elif fs["voicemail_box"]:
        box = _a("default ${domain_name} " + str(fs["voicemail_box"]))
        fallback = (
            f'        <action application="voicemail" data={box}/>\n'
            '        <action application="hangup" data="NORMAL_CLEARING"/>'
        )
    else:
        fallback = '        <action application="hangup" data="TEMPORARY_FAILURE"/>'
    return f"""<!-- {HEADER} -->
<!-- Replaces the stock public.xml: no transfers into the default context. Order matters:
     unknown destination, anonymous callers, caller-ID countries, then the controller. Every
     rejection logs the source IP ("{LOG_TAG} ... from <ip>") for fail2ban. -->
<include>
  <context name="public">
    <extension name="esl-agent reject unknown destination">
      <condition field="destination_number" expression={_a("^(?!" + did[1:-1] + "$)")}>
{_reject("unknown-destination", "UNALLOCATED_NUMBER")}
      </condition>
    </extension>
    <extension name="esl-agent reject anonymous number">
      <condition field="caller_id_number" expression={_a(ANONYMOUS_REGEX)}>
{_reject("anonymous")}
      </condition>
    </extension>
    <extension name="esl-agent reject anonymous name">
      <condition field="caller_id_name" expression="^(?i:anonymous|restricted|privacy|unavailable)$">
{_reject("anonymous")}
      </condition>
    </extension>
    <extension name="esl-agent reject caller country">
      <condition field="caller_id_number" expression={_a("^(?!" + policy.caller_allow_regex()[1:-1] + "$)")}>
{_reject("caller-country")}
      </condition>
    </extension>
    <extension name="esl-agent controller">
      <condition field="destination_number" expression={_a(did)}>
        <action application="set" data="send_silence_when_idle=-1"/>
        <action application="set" data="hangup_after_bridge=true"/>
        <action application="answer"/>
        <action application="socket" data={_a(str(fs["controller"]) + " async full")}/>
        <!-- Reached only when the controller is down or the socket ended without a hangup. -->
        <action application="log" data="ERR esl-agent controller unreachable, playing the apology"/>
        <action application="playback" data={_a(fs["apology_file"])}/>
{fallback}
      </condition>
    </extension>
  </context>
</include>
"""


def outbound_dialplan(policy: DialPolicy) -> str:
    trunk = _section(policy, "trunk")
    gateway = str(trunk.get("name") or "provider")
    parts = []
    for rule in policy.blocked:
        if rule.prefix:
            regex = "^" + rule.prefix.replace("+", r"\+")
        elif rule.country == policy.default_country:
            regex = f"^{rule.short}"
        else:
            continue
        parts.append(
            f"""    <extension name={_a(rule.rule)}>
      <condition field="destination_number" expression={_a(regex)}>
        <action application="log" data={_a("WARNING esl-agent BLOCK " + (rule.prefix or rule.short))}/>
        <action application="hangup" data="CALL_REJECTED"/>
      </condition>
    </extension>"""
        )
    for iso in policy.outbound_countries:
        parts.append(
            f"""    <extension name={_a("allow:country " + iso)}>
      <condition field="destination_number" expression={_a(policy.allow_regex(iso))}>
        <action application="set" data="effective_caller_id_number={policy.dids[0] if policy.dids else ""}"/>
        <action application="bridge" data="sofia/gateway/{escape(gateway)}/${{destination_number}}"/>
      </condition>
    </extension>"""
        )
    body = "\n".join(parts)
    names = ", ".join(COUNTRIES[i][0] for i in policy.outbound_countries)
    return f"""<!-- {HEADER} -->
<!-- Numbers the controller dials: blocks first, then the country allowlist (calling codes
     {names}), and no catch-all: anything else finds no route. The controller checks the
     same policy before it builds any command (DialPolicy.transfer_args); routing every
     outbound leg through this context (uuid_transfer <uuid> <E.164> XML {OUTBOUND_CONTEXT}, or
     originate loopback/<E.164>/{OUTBOUND_CONTEXT}) makes this the second lock. -->
<include>
  <context name="{OUTBOUND_CONTEXT}">
{body}
  </context>
</include>
"""


# --------------------------------------------------------------------------------------------
# Firewall


def _ports(policy: DialPolicy) -> list[int]:
    ports = [int(p) for p in _fs(policy)["sip_ports"]]
    for p in ports:
        if not 1 <= p <= 65535:
            raise ConfigError(f"{policy.source}: freeswitch.sip_ports: bad port {p}")
    return ports


def ufw_script(policy: DialPolicy) -> str:
    fs = _fs(policy)
    ports = ",".join(str(p) for p in _ports(policy))
    lines = [
        "#!/bin/sh",
        f"# {HEADER}",
        "# SIP only from the provider networks, RTP open, event socket and controller never exposed.",
        "set -eu",
        "ufw default deny incoming",
        "ufw default allow outgoing",
        "ufw allow OpenSSH",
    ]
    for net in provider_networks(policy):
        lines.append(f"ufw allow proto udp from {net} to any port {ports} comment 'esl-agent SIP provider'")
        lines.append(f"ufw allow proto tcp from {net} to any port {ports} comment 'esl-agent SIP provider'")
    lines += [
        f"ufw allow proto udp to any port {fs['rtp_start']}:{fs['rtp_end']} comment 'esl-agent RTP'",
        f"ufw deny proto tcp to any port {fs['esl_port']} comment 'esl-agent event socket never exposed'",
        "ufw deny proto tcp to any port 8084 comment 'esl-agent controller never exposed'",
        "ufw --force enable",
        "",
    ]
    return "\n".join(lines)


def nftables_conf(policy: DialPolicy) -> str:
    fs = _fs(policy)
    nets = provider_networks(policy)
    v4 = ", ".join(str(n) for n in nets if n.version == 4)
    v6 = ", ".join(str(n) for n in nets if n.version == 6)
    ports = ", ".join(str(p) for p in _ports(policy))
    sets = "  set sip_providers_v4 {\n    type ipv4_addr\n    flags interval\n"
    sets += f"    elements = {{ {v4} }}\n  }}\n" if v4 else "  }\n"
    sets += "  set sip_providers_v6 {\n    type ipv6_addr\n    flags interval\n"
    sets += f"    elements = {{ {v6} }}\n  }}\n" if v6 else "  }\n"
    return f"""#!/usr/sbin/nft -f
# {HEADER}
# Load with: nft -f /etc/nftables.d/esl-agent.nft
table inet esl_agent
delete table inet esl_agent

table inet esl_agent {{
{sets}
  chain input {{
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    iif "lo" accept
    meta l4proto {{ icmp, ipv6-icmp }} accept
    tcp dport 22 accept
    # event socket and controller: loopback only, never from outside
    tcp dport {{ {fs['esl_port']}, 8084, 8090, 9090 }} drop
    ip saddr @sip_providers_v4 meta l4proto {{ udp, tcp }} th dport {{ {ports} }} accept
    ip6 saddr @sip_providers_v6 meta l4proto {{ udp, tcp }} th dport {{ {ports} }} accept
    udp dport {fs['rtp_start']}-{fs['rtp_end']} accept
  }}
}}
"""


# --------------------------------------------------------------------------------------------
# fail2ban

FAIL2BAN_FILTER = r"""# Rendered by `esl-agent conf render`. Do not edit: edit esl_agent/policy/render.py.
# FreeSWITCH probes: auth failures, unknown users, ACL rejections (WARNING) and esl-agent's own
# dialplan rejections. Matches the old log format (timestamp [LEVEL] file:line) and the 1.10
# format (idle-CPU column, and a session UUID in front of lines logged inside a call).
# Needs `<param name="log-auth-failures" value="true"/>` on the SIP profiles.

[INCLUDES]
before = common.conf

[Definition]
_daemon = freeswitch

_uuid = (?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\s+)?
_when = (?:(?:\d+-)?\d+-\d+[ T]\d+:\d+:\d+(?:\.\d+)?\s*)?
_cpu = (?:\d+(?:\.\d+)?%%\s*)?

prefregex = ^%(__prefix_line)s%(_uuid)s%(_when)s%(_cpu)s\[WARN(?:ING)?\](?: \[SOFIA\])? \[?[\w.]+\.c:\d+\]? <F-CONTENT>.+</F-CONTENT>$

failregex = ^Can't find user \[[^\]]*\] from <HOST>$
            ^SIP auth failure \((?:REGISTER|INVITE)\) on sofia profile '[^']+' for \[[^\]]*\] from ip <HOST>$
            ^IP <HOST> Rejected by (?:register )?acl "[^"]*"$
            ^esl-agent REJECT [a-z-]+ from <HOST>$

ignoreregex =

datepattern = (?:%%Y-)?%%m-%%d[ T]%%H:%%M:%%S(?:\.%%f)?
"""  # noqa: E501


def fail2ban_jail(policy: DialPolicy) -> str:
    f2b = {"bantime": 86400, "findtime": 600, "maxretry": 5, "recidive_bantime": 604800}
    f2b.update(_section(policy, "fail2ban"))
    fs = _fs(policy)
    ignore = " ".join(["127.0.0.1/8", "::1"] + [str(n) for n in provider_networks(policy)])
    ports = ",".join(str(p) for p in _ports(policy))
    return f"""# {HEADER}
[freeswitch-esl-agent]
enabled  = true
filter   = freeswitch-esl-agent
logpath  = {fs['log_file']}
backend  = auto
# All SIP ports: the stock freeswitch jail covers only 5060/5061.
port     = {ports}
protocol = all
banaction = %(banaction_allports)s
bantime  = {int(f2b['bantime'])}
findtime = {int(f2b['findtime'])}
maxretry = {int(f2b['maxretry'])}
# The provider's networks are never banned.
ignoreip = {ignore}

[recidive]
enabled  = true
logpath  = /var/log/fail2ban.log
# Every protocol: the stock recidive jail bans TCP only, and SIP probes come over UDP.
protocol = all
banaction = %(banaction_allports)s
bantime  = {int(f2b['recidive_bantime'])}
findtime = 86400
maxretry = 3
ignoreip = {ignore}
"""


# --------------------------------------------------------------------------------------------
# Whole tree


def render(policy: DialPolicy) -> dict[str, str]:
    """Every generated file, keyed by its path relative to conf/."""
    trunk_name = str(_section(policy, "trunk").get("name") or "provider")
    return {
        "freeswitch/autoload_configs/acl.conf.xml": acl_conf(policy),
        "freeswitch/autoload_configs/event_socket.conf.xml": event_socket_conf(policy),
        "freeswitch/autoload_configs/switch.conf.xml": switch_conf(policy),
        "freeswitch/vars.xml": vars_xml(policy),
        "freeswitch/sip_profiles/external.xml": external_profile(policy),
        f"freeswitch/sip_profiles/external/{trunk_name}.xml": gateway_xml(policy),
        "freeswitch/dialplan/public.xml": public_dialplan(policy),
        "freeswitch/dialplan/esl_agent_outbound.xml": outbound_dialplan(policy),
        "firewall/ufw.sh": ufw_script(policy),
        "firewall/nftables.conf": nftables_conf(policy),
        "fail2ban/filter.d/freeswitch-esl-agent.conf": FAIL2BAN_FILTER,
        "fail2ban/jail.d/freeswitch-esl-agent.conf": fail2ban_jail(policy),
    }


def write(files: Mapping[str, str], out_dir: str | Path) -> list[Path]:
    """Write rendered files under out_dir; return the paths written."""
    written = []
    for rel, text in files.items():
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if rel.endswith(".sh"):
            path.chmod(0o755)
        written.append(path)
    return written


def stale(policy: DialPolicy, out_dir: str | Path) -> list[str]:
    """Rendered files that are missing or differ on disk under out_dir."""
    out = []
    for rel, text in render(policy).items():
        path = Path(out_dir) / rel
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            out.append(rel)
            continue
        if current != text:
            out.append(rel)
    return out
