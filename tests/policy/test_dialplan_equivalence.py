"""The rendered dialplan and the policy object give the same verdict on every number.

The dialplan is evaluated the way mod_dialplan_xml does it: extensions in order, every condition
of an extension must match, the first matching extension wins; no match = no route. Regexes run
with re.ASCII, like FreeSWITCH's PCRE without UTF mode.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from esl_agent.policy import render
from esl_agent.policy.dialing import DialPolicy

ROOT = Path(__file__).resolve().parents[2]
POLICY = DialPolicy.from_file(ROOT / "conf" / "policy.yaml")
FILES = render.render(POLICY)


def _context(rel: str) -> ET.Element:
    root = ET.fromstring(FILES[rel])
    ctx = root.find("context")
    assert ctx is not None
    return ctx


def route(context: ET.Element, fields: dict[str, str]) -> ET.Element | None:
    """The extension FreeSWITCH would pick for these channel fields, or None (no route)."""
    for ext in context.findall("extension"):
        conditions = ext.findall("condition")
        if conditions and all(
            re.search(c.get("expression") or "", fields.get(c.get("field") or "", ""), re.ASCII)
            for c in conditions
        ):
            return ext
    return None


def _bridges(ext: ET.Element) -> bool:
    return any(a.get("application") == "bridge" for a in ext.iter("action"))


OUTBOUND = [
    # premium and international networks
    "+870773123456", "+8816 3123 4567", "+8817 6312 3456", "+8818 1234 5678", "+8819 1234 5678",
    "00 882 16 1234 5678", "+883 5100 1234 5678", "+979 1234 5678", "+808 1234 5678",
    "0900 123 456", "0901 123456", "0930 123456", "0931 123456", "0939 123456", "0810 123 456",
    "0820 123 456", "0821 123456", "0828 123456", "118877", "11833",
    "+49 900 1234567", "+49 9009 123456", "+49 137 1234567", "+49 180 5123456", "+49 700 12345678",
    "+49 1013 30 1234567", "+41 900 123456", "+41 901 123456", "+41 906 123456",
    "+39 899 123456", "+39 144 123456", "+39 166 123456", "+39 163 123456", "+39 164 123456",
    "+39 1254 1234", "+39 412 123456", "+39 444 123456", "+39 448 123456", "+39 481 123456",
    # allowed
    "+43 1 18 77 123", "01 1877 123", "+43 1 900 1234", "0664 123 45 67", "+43 664 1234567",
    "+49 30 1234567", "+49 1512 3456789", "+41 44 668 18 00", "+39 06 1234 5678",
    "+39 02 8901 2345", "+39 347 123 4567", "0043 2742 12345",
    # wrong country
    "+33 1 23 45 67 89", "+44 20 7946 0000", "+1 212 555 0100", "+800 1234 5678", "+7 495 1234567",
    # bad input and injection attempts
    "+4312", "12345", "+43 0664 1234567", "+436641234567,sofia/gw/+8816", "+436641234567|+8816123",
    "{ignore_early_media=1}+4366412", "+436641234567@evil", "user/1000", "${sofia_contact(1000)}",
    "+436641234567\r\nexit", "+٤٣٦٦٤١٢٣٤٥٦٧", "+４３６６４１２３４５６７", "+436641234567 XML default",
    "+43664*1234567", "+4366412345678901234567",
]


def test_table_is_big_enough() -> None:
    assert len(OUTBOUND) >= 40


@pytest.mark.parametrize("text", OUTBOUND)
def test_outbound_same_verdict(text: str) -> None:
    decision = POLICY.check(text)
    ext = route(_context("freeswitch/dialplan/esl_agent_outbound.xml"), {"destination_number": decision.number})
    dialplan_allows = ext is not None and _bridges(ext)
    assert dialplan_allows == decision.allowed, (text, decision, ext.get("name") if ext is not None else None)
    if decision.allowed or decision.rule.startswith("block:"):
        assert ext is not None and ext.get("name") == decision.rule
    if decision.rule.startswith("deny:country"):
        assert ext is None  # no route: the dialplan has no catch-all


@pytest.mark.parametrize("text", [t for t in OUTBOUND if POLICY.check(t).rule.startswith("invalid:")])
def test_raw_injection_never_routes_out(text: str) -> None:
    """Even if a raw string reached FreeSWITCH, no bridging extension would take it."""
    ext = route(_context("freeswitch/dialplan/esl_agent_outbound.xml"), {"destination_number": text})
    assert ext is None or not _bridges(ext)


INBOUND = [
    ("+43123456789", "+436641234567", "Jane"),
    ("43123456789", "06641234567", "Jane"),
    ("+43123456789", "00491511234567", "Max"),
    ("+43123456789", "+41446681800", "Reto"),
    ("+43123456789", "+390612345678", "Gianni"),
    ("+43123456789", "+33123456789", "Jean"),
    ("+43123456789", "+8816123456789", "Sat"),
    ("+43123456789", "anonymous", "Anonymous"),
    ("+43123456789", "Anonymous", "x"),
    ("+43123456789", "", ""),
    ("+43123456789", "0000000000", "x"),
    ("+43123456789", "Restricted", "x"),
    ("+43123456789", "privacy", "x"),
    ("+43123456789", "1234", "x"),
    ("+43123456789", "+4306641234567", "x"),
    ("1000", "+436641234567", "x"),
    ("+43123456788", "+436641234567", "x"),
    ("0123456789", "+436641234567", "x"),
]


@pytest.mark.parametrize(("did", "caller", "name"), INBOUND)
def test_inbound_same_verdict(did: str, caller: str, name: str) -> None:
    decision = POLICY.check(did, caller=caller, direction="in")
    ext = route(
        _context("freeswitch/dialplan/public.xml"),
        {"destination_number": did, "caller_id_number": caller, "caller_id_name": name},
    )
    assert ext is not None  # public always ends in the controller or a logged rejection
    reaches_controller = any(a.get("application") == "socket" for a in ext.iter("action"))
    assert reaches_controller == decision.allowed, (did, caller, decision, ext.get("name"))
    if not reaches_controller:
        logs = [a.get("data") or "" for a in ext.iter("action") if a.get("application") == "log"]
        assert logs and logs[0].endswith("from ${sip_network_ip}")
