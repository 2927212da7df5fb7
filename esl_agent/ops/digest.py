"""The daily guardian digest: who probed us, what was blocked, how many calls, what they cost.

Sources, all for one calendar day:
- FreeSWITCH's log file: auth failures, unknown users, ACL rejections and esl-agent's own
  dialplan rejections, per source IP (the same lines conf/fail2ban bans on); blocked destinations
  (`esl-agent BLOCK`). Old and 1.10 log formats, with or without a session UUID in front.
- fail2ban's log: bans of the day.
- mod_cdr_csv's default template: inbound (context public) and outbound calls, minutes, cost.
  Parsed from the right: every field after the destination is FreeSWITCH's own and never holds
  a quote, so a caller name with quotes, commas or a line break cannot shift the columns.
- The audit log: outbound attempts, allowed and denied (and whether its chain is intact).

`build(...)` returns a Digest; `Digest.text()` is what `esl-agent digest` prints and mails.
"""

from __future__ import annotations

import re
import smtplib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from esl_agent.ops.cost import Rates, cost_per_minute
from esl_agent.policy.audit import AuditLog
from esl_agent.policy.dialing import OUTBOUND_CONTEXT

_UUID = r"(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\s+)?"
_SYSLOG = r"(?:\S+\s+\S+\s+freeswitch(?:\[\d+\])?:\s+)?"  # "<time> <host> freeswitch[pid]: " (syslog copies)
_LOG_LINE = re.compile(
    rf"^{_SYSLOG}{_UUID}(?P<date>(?:\d{{4}}-)?\d\d-\d\d)[ T]\d\d:\d\d:\d\d(?:\.\d+)?\s+(?:\d+(?:\.\d+)?%\s+)?"
    r"\[(?P<level>[A-Z]+)\](?: \[SOFIA\])? \[?[\w.]+\.c:\d+\]? (?P<msg>.*)$"
)
_IP = r"(?P<ip>[0-9a-fA-F.:]+)"
PROBES = (
    ("auth-failure", re.compile(rf"^SIP auth failure \((?:REGISTER|INVITE)\) on sofia profile '[^']+' "
                                rf"for \[[^\]]*\] from ip {_IP}$")),
    ("unknown-user", re.compile(rf"^Can't find user \[[^\]]*\] from {_IP}$")),
    ("acl-rejected", re.compile(rf'^IP {_IP} Rejected by (?:register )?acl "[^"]*"$')),
    ("dialplan-rejected", re.compile(rf"^esl-agent REJECT (?P<reason>[a-z-]+) from {_IP}$")),
)
_BLOCK = re.compile(r"^esl-agent BLOCK (?P<rule>\S+)$")
_BAN = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d) [\d:,]+ fail2ban\.actions\s+\[\d+\]: NOTICE\s+\[[^\]]+\] Ban (?P<ip>\S+)$"
)
_CDR_TAIL = re.compile(
    r'^"(?P<head>.*)","(?P<context>[^"]*)","(?P<start>[^"]*)","(?P<answer>[^"]*)","(?P<end>[^"]*)",'
    r'"(?P<duration>\d*)","(?P<billsec>\d*)","(?P<cause>[^"]*)","(?P<uuid>[^"]*)","(?P<bleg>[^"]*)",'
    r'"(?P<account>[^"]*)","(?P<read_codec>[^"]*)","(?P<write_codec>[^"]*)"$',
    re.DOTALL,
)


@dataclass(frozen=True)
class CdrRow:
    """One mod_cdr_csv default-template record."""

    caller_name: str
    caller_number: str
    destination: str
    context: str
    start: str
    billsec: int
    hangup_cause: str
    uuid: str


def parse_cdr_csv(lines: Iterable[str]) -> list[CdrRow]:
    """Rows of a mod_cdr_csv file in the default template; bad lines are skipped."""
    rows: list[CdrRow] = []
    pending = ""
    for raw in lines:
        line = raw.rstrip("\r\n")
        text = f"{pending}\n{line}" if pending else line
        m = _CDR_TAIL.match(text)
        if not m:
            # A line break inside a caller name: join up to a few physical lines.
            pending = text if text.count("\n") < 3 and text.startswith('"') else ""
            continue
        pending = ""
        parts = m.group("head").rsplit('","', 2)
        if len(parts) != 3:
            continue
        name, number, dest = parts
        rows.append(
            CdrRow(
                caller_name=name.replace('""', '"'),
                caller_number=number,
                destination=dest,
                context=m.group("context"),
                start=m.group("start"),
                billsec=int(m.group("billsec") or 0),
                hangup_cause=m.group("cause"),
                uuid=m.group("uuid"),
            )
        )
    return rows


@dataclass
class Digest:
    """Counts for one day."""

    date: str
    currency: str = "EUR"
    probes_by_ip: Counter = field(default_factory=Counter)
    probes_by_kind: Counter = field(default_factory=Counter)
    rejections_by_reason: Counter = field(default_factory=Counter)
    blocked_destinations: Counter = field(default_factory=Counter)
    bans: Counter = field(default_factory=Counter)
    inbound_calls: int = 0
    inbound_seconds: int = 0
    outbound_calls: int = 0
    outbound_seconds: int = 0
    outbound_allowed: int = 0
    outbound_denied: int = 0
    denied_by_rule: Counter = field(default_factory=Counter)
    cost: float = 0.0
    audit_ok: bool | None = None
    audit_bad_line: int | None = None

    @property
    def probes(self) -> int:
        return sum(self.probes_by_ip.values())

    @property
    def cost_per_minute(self) -> float:
        return cost_per_minute(self.cost, self.inbound_seconds + self.outbound_seconds)

    def text(self) -> str:
        """The digest as plain text (printed and mailed)."""
        out = [f"esl-agent daily digest for {self.date}", ""]
        out.append(f"SIP probes: {self.probes}")
        for kind, n in sorted(self.probes_by_kind.items()):
            out.append(f"  {kind}: {n}")
        if self.probes_by_ip:
            out.append("Top sources:")
            for ip, n in self.probes_by_ip.most_common(10):
                out.append(f"  {ip:<40} {n}")
        out.append(f"fail2ban bans: {sum(self.bans.values())}")
        out.append("")
        out.append(f"Inbound calls: {self.inbound_calls}, {self.inbound_seconds / 60:.1f} min")
        out.append(f"Outbound calls: {self.outbound_calls}, {self.outbound_seconds / 60:.1f} min")
        out.append(f"Outbound attempts audited: {self.outbound_allowed} allowed, {self.outbound_denied} denied")
        for rule, n in self.denied_by_rule.most_common():
            out.append(f"  {rule}: {n}")
        if self.blocked_destinations:
            out.append("Blocked in the dialplan:")
            for rule, n in self.blocked_destinations.most_common():
                out.append(f"  {rule}: {n}")
        out.append("")
        out.append(f"Estimated cost: {self.cost:.2f} {self.currency}")
        out.append(f"Cost per call minute: {self.cost_per_minute:.4f} {self.currency}")
        if self.audit_ok is not None:
            state = "intact" if self.audit_ok else f"BROKEN at line {self.audit_bad_line}"
            out.append(f"Audit log chain: {state}")
        return "\n".join(out) + "\n"


def _lines(path: str | Path | None) -> list[str]:
    if not path:
        return []
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _same_day(date_text: str, day: str) -> bool:
    # Old FreeSWITCH logs may omit the year ("08-03 07:56:53"): compare month and day then.
    return date_text == day or (len(date_text) == 5 and day.endswith(date_text))


def build(
    day: str,
    *,
    log: str | Path | None = None,
    cdr: str | Path | None = None,
    audit: str | Path | None = None,
    fail2ban_log: str | Path | None = None,
    rates: Rates | None = None,
    outbound_context: str = OUTBOUND_CONTEXT,
) -> Digest:
    """Count everything for calendar day `day` (YYYY-MM-DD, local time as the logs write it)."""
    rates = rates or Rates()
    d = Digest(date=day, currency=rates.currency)
    for line in _lines(log):
        m = _LOG_LINE.match(line)
        if not m or not _same_day(m.group("date"), day):
            continue
        msg = m.group("msg").rstrip()
        if m.group("level") in ("WARNING", "WARN"):
            for kind, rx in PROBES:
                pm = rx.match(msg)
                if pm:
                    d.probes_by_ip[pm.group("ip")] += 1
                    d.probes_by_kind[kind] += 1
                    if kind == "dialplan-rejected":
                        d.rejections_by_reason[pm.group("reason")] += 1
                    break
            bm = _BLOCK.match(msg)
            if bm:
                d.blocked_destinations[bm.group("rule")] += 1
    for line in _lines(fail2ban_log):
        m = _BAN.match(line.rstrip())
        if m and m.group("date") == day:
            d.bans[m.group("ip")] += 1
    for row in parse_cdr_csv(_lines(cdr)):
        if not row.start.startswith(day):
            continue
        if row.context == "public":
            d.inbound_calls += 1
            d.inbound_seconds += row.billsec
            d.cost += rates.call_cost(row.billsec, direction="in")
        elif row.context == outbound_context:
            d.outbound_calls += 1
            d.outbound_seconds += row.billsec
            d.cost += rates.call_cost(row.billsec, direction="out", number=row.destination)
    if audit:
        ok, bad = AuditLog.verify(audit)
        d.audit_ok, d.audit_bad_line = ok, bad
        for rec in AuditLog.records(audit) if ok else []:
            if rec.get("action") != "outbound" or not _ts_day(rec.get("ts"), day):
                continue
            if rec.get("allowed"):
                d.outbound_allowed += 1
            else:
                d.outbound_denied += 1
                d.denied_by_rule[str(rec.get("rule"))] += 1
    return d


def _ts_day(ts: object, day: str) -> bool:
    from datetime import datetime

    if not isinstance(ts, (int, float)):
        return False
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d") == day


def send_mail(digest: Digest, *, host: str, port: int, sender: str, to: str, timeout: float = 10.0) -> None:
    """Mail the digest over plain SMTP (use a local relay; STARTTLS when it offers it)."""
    msg = EmailMessage()
    msg["Subject"] = f"esl-agent digest {digest.date}: {digest.probes} probes, {digest.outbound_denied} denied"
    msg["From"] = sender
    msg["To"] = to
    msg.set_content(digest.text())
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls()
            smtp.ehlo()
        smtp.send_message(msg)
