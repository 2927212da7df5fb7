"""`esl-agent conf lint`: refuse the stock FreeSWITCH pitfalls in a config tree.

Checks every .xml file under the given paths (files or directories):

- default-password   `ClueCon` on the event socket; a literal stock or weak `default_password`
                     in vars.xml (1234, digits only, shorter than 12 characters)
- listen-any         a listen-ip of `::`, `0.0.0.0` or `[::]` (event socket, XML-RPC, ...)
- acl-default        an ACL list without an explicit `default="deny"`
- esl-no-acl         an event socket without `apply-inbound-acl`
- profile-no-acl     a SIP profile landing calls in context public without `apply-inbound-acl`
- catch-all          an extension that bridges out and whose destination regex accepts an
                     international-network number (+881 ..., 00881 ..., 881 ...)
- public-to-default  a transfer from context public into context default (the stock extensions)

FreeSWITCH's pre-processor lines (`<X-PRE-PROCESS ... data="..."/>`) are read as they are.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Numbers no legitimate outbound route should accept; a route matching one is a catch-all.
CATCH_ALL_PROBES = ("+8816123456789", "008816123456789", "8816123456789", "+979123456789", "+88299999999")
_ANY_IP = {"::", "0.0.0.0", "[::]", "::0", "0:0:0:0:0:0:0:0"}
_OUTWARD = re.compile(r"(sofia/(gateway|external)/|\$\{?default_provider|loopback/)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One problem: which check, where, and what."""

    code: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.code}: {self.message}"


def _xml_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*.xml") if f.is_file())
        elif p.is_file():
            yield p


def _parse(path: Path) -> tuple[ET.Element | None, str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        return ET.fromstring(text), text
    except ET.ParseError:
        # Stock fragments may hold several top-level elements: wrap them.
        try:
            return ET.fromstring(f"<lint-wrapper>{re.sub(r'<[?]xml[^>]*[?]>', '', text)}</lint-wrapper>"), text
        except ET.ParseError:
            return None, text


def _params(elem: ET.Element) -> dict[str, str]:
    return {
        (p.get("name") or "").lower(): p.get("value") or ""
        for p in elem.iter("param")
    }


def lint_paths(paths: Iterable[str | Path]) -> list[Finding]:
    """Every finding in the XML files under `paths`."""
    findings: list[Finding] = []
    for path in _xml_files(paths):
        findings.extend(lint_file(path))
    return findings


def lint_file(path: Path) -> list[Finding]:
    root, text = _parse(path)
    where = str(path)
    out: list[Finding] = []
    if root is None:
        return [Finding("parse", where, "not well-formed XML")]
    for m in re.finditer(r'<X-PRE-PROCESS\s+cmd="set"\s+data="default_password=([^"]*)"', text):
        value = m.group(1)
        if value in ("1234", "2345") or len(value) < 12 or value.isdigit():
            out.append(
                Finding("default-password", where, "vars.xml sets a stock or weak default_password (like 1234)")
            )
    for elem in root.iter("param"):
        name = (elem.get("name") or "").lower()
        value = elem.get("value") or ""
        if name == "password" and value == "ClueCon":
            out.append(Finding("default-password", where, "event socket password is the stock ClueCon"))
        if name in ("listen-ip", "sip-ip", "rtp-ip", "bind-address") and value.strip() in _ANY_IP:
            out.append(Finding("listen-any", where, f"{name} {value} listens on every interface"))
    for conf in root.iter("configuration"):
        name = (conf.get("name") or "").lower()
        if name == "acl.conf":
            for lst in conf.iter("list"):
                if (lst.get("default") or "").lower() != "deny":
                    out.append(
                        Finding(
                            "acl-default",
                            where,
                            f'ACL list {lst.get("name")!r} has no default="deny" (lists default to allow)',
                        )
                    )
        if name == "event_socket.conf":
            params = _params(conf)
            if not params.get("apply-inbound-acl"):
                out.append(Finding("esl-no-acl", where, "event socket without apply-inbound-acl"))
    for profile in root.iter("profile"):
        settings = profile.find("settings")
        params = _params(settings) if settings is not None else {}
        if params.get("context", "").lower() == "public" and not params.get("apply-inbound-acl"):
            out.append(
                Finding(
                    "profile-no-acl",
                    where,
                    f"SIP profile {profile.get('name')!r} takes calls into context public without "
                    "apply-inbound-acl",
                )
            )
    for context in root.iter("context"):
        cname = (context.get("name") or "").lower()
        for ext in context.iter("extension"):
            out.extend(_lint_extension(where, cname, ext))
    return out


def _lint_extension(where: str, context: str, ext: ET.Element) -> list[Finding]:
    out: list[Finding] = []
    name = ext.get("name") or "?"
    actions = [a for a in ext.iter() if a.tag in ("action", "anti-action")]
    if context == "public":
        for a in actions:
            app = (a.get("application") or "").lower()
            data = (a.get("data") or "").split()
            if app == "transfer" and len(data) >= 3 and data[2].lower() == "default":
                out.append(
                    Finding("public-to-default", where, f"extension {name!r} transfers public calls to default")
                )
    bridges_out = any(
        (a.get("application") or "").lower() == "bridge" and _OUTWARD.search(a.get("data") or "")
        for a in actions
    )
    if bridges_out:
        exprs = [
            c.get("expression") or ""
            for c in ext.iter("condition")
            if (c.get("field") or "") in ("destination_number", "${destination_number}")
        ]
        if not exprs:
            out.append(Finding("catch-all", where, f"extension {name!r} bridges out with no destination check"))
        for expr in exprs:
            try:
                rx = re.compile(_pcre_to_python(expr))
            except re.error:
                continue
            hit = next((p for p in CATCH_ALL_PROBES if rx.search(p)), None)
            if hit:
                out.append(
                    Finding(
                        "catch-all",
                        where,
                        f"extension {name!r} bridges out and its pattern {expr!r} accepts {hit}",
                    )
                )
    return out


def _pcre_to_python(expr: str) -> str:
    # The PCRE used in dialplans is nearly Python syntax; named groups differ.
    return expr.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
