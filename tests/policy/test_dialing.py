"""The dial policy object: normalisation, blocks, allowlist, injection, inbound callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from esl_agent.errors import ConfigError, PolicyDenied
from esl_agent.policy.dialing import Decision, DialPolicy, InvalidNumber, is_anonymous

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def policy() -> DialPolicy:
    return DialPolicy.from_file(ROOT / "conf" / "policy.yaml")


@pytest.mark.parametrize(
    ("text", "country", "e164"),
    [
        ("+43 664 123 45 67", "AT", "+436641234567"),
        ("0664 123 45 67", "AT", "+436641234567"),
        ("0664-123-45-67", "AT", "+436641234567"),
        ("0043 664 1234567", "AT", "+436641234567"),
        ("+43 (0) 664 1234567", "AT", "+436641234567"),
        ("(0664) 123.45.67", "AT", "+436641234567"),
        ("01 58 58 0", "AT", "+43158580"),
        ("030 1234567", "DE", "+49301234567"),
        ("044 668 18 00", "CH", "+41446681800"),
        ("06 1234 5678", "IT", "+390612345678"),  # Italy keeps the leading 0
        ("+39 06 1234 5678", "AT", "+390612345678"),
        ("347 123 4567", "IT", "+393471234567"),  # Italian mobile, no trunk prefix
        ("+1 212 555 0100", "AT", "+12125550100"),
    ],
)
def test_normalize_to_e164(policy: DialPolicy, text: str, country: str, e164: str) -> None:
    assert policy.normalize(text, default_country=country) == e164


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no digits"),
        ("+", "no digits"),
        ("12345", "short code or local number without area code"),
        ("+4312", "not E.164 (+ and 8 to 15 digits)"),
        ("+4366412345678901234", "too long"),
        ("+43 0664 1234567", "national trunk prefix after the country code"),
        ("+0123456789", "not E.164 (+ and 8 to 15 digits)"),
        ("43+6641234567", "misplaced +"),
        ("0800 FLOWERS", "letters"),
    ],
)
def test_normalize_refuses(policy: DialPolicy, text: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        policy.normalize(text)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("+870 773 123456", "block:+870 Inmarsat"),
        ("+8816 3123 4567", "block:+881 GMSS satellite (8816/8817 Iridium, 8818/8819 Globalstar)"),
        ("00 8817 6312 3456", "block:+881 GMSS satellite (8816/8817 Iridium, 8818/8819 Globalstar)"),
        ("+8818 1234 5678", "block:+881 GMSS satellite (8816/8817 Iridium, 8818/8819 Globalstar)"),
        ("+882 16 1234 5678", "block:+882 international networks"),
        ("+883 5100 1234 5678", "block:+883 international networks"),
        ("+979 1234 5678", "block:+979 international premium rate"),
        ("+808 1234 5678", "block:+808 international shared cost"),
        ("0900 123 456", "block:+43900 AT 0900 premium"),
        ("0901 123 456", "block:+43901 AT 0901 premium"),
        ("0930 123 456", "block:+43930 AT 0930 premium"),
        ("0931 123456", "block:+43931 AT 0931 premium"),
        ("0939 123456", "block:+43939 AT 0939 premium"),
        ("0810 123 456", "block:+43810 AT 0810 shared cost"),
        ("0820 123 456", "block:+43820 AT 0820 tariffed"),
        ("0821 123 456", "block:+43821 AT 0821 tariffed"),
        ("0828 123 456", "block:+43828 AT 0828 tariffed"),
        ("118 877", "block:118 AT 118xxx directory"),
        ("+49 900 1 234567", "block:+49900 DE 0900 premium (incl. 09009 diallers)"),
        ("+49 9009 123456", "block:+49900 DE 0900 premium (incl. 09009 diallers)"),
        ("+49 137 1234567", "block:+49137 DE 0137 mass calls"),
        ("+49 180 5 123456", "block:+4918 DE 018x shared cost / user groups (incl. 0180)"),
        ("+49 181 12345678", "block:+4918 DE 018x shared cost / user groups (incl. 0180)"),
        ("+49 700 12345678", "block:+49700 DE 0700 personal numbers"),
        ("+49 10 13 30 1234567", "block:+4910 DE 010xy call-by-call"),
        ("+41 900 123 456", "block:+41900 CH 0900 premium"),
        ("+41 901 123 456", "block:+41901 CH 0901 premium"),
        ("+41 906 123 456", "block:+41906 CH 0906 adult premium"),
        ("+39 899 123456", "block:+3989 IT 89x premium"),
        ("+39 892 123456", "block:+3989 IT 89x premium"),
        ("+39 144 123456", "block:+39144 IT 144 premium"),
        ("+39 166 123456", "block:+39166 IT 166 premium"),
        ("+39 163 123456", "block:+39163 IT 163 services"),
        ("+39 164 123456", "block:+39164 IT 164 services"),
        ("+39 12 54 1234", "block:+3912 IT 12xy directory"),
        ("+39 412 123456", "block:+39412 IT 412 network services"),
        ("+39 444 123456", "block:+39444 IT 444 network services"),
        ("+39 448 123456", "block:+39448 IT 448 network services"),
        ("+39 481 123456", "block:+3948 IT 48x data services"),
    ],
)
def test_blocked(policy: DialPolicy, text: str, rule: str) -> None:
    d = policy.check(text)
    assert d == Decision(False, d.number, rule, d.spoken)
    assert d.spoken.startswith("I'm sorry")


@pytest.mark.parametrize(
    ("text", "number", "rule"),
    [
        # Vienna is +43 1 ...: no Austrian prefix rule may catch it (118 is a short code only).
        ("+43 1 18 77 123", "+4311877123", "allow:country AT"),
        ("01 1877 123", "+4311877123", "allow:country AT"),
        ("+43 1 900 1234", "+4319001234", "allow:country AT"),
        ("+43 1 810 1234", "+4318101234", "allow:country AT"),
        ("0664 123 45 67", "+436641234567", "allow:country AT"),
        ("+49 30 1234567", "+49301234567", "allow:country DE"),
        ("+49 1512 3456789", "+4915123456789", "allow:country DE"),
        ("+41 44 668 18 00", "+41446681800", "allow:country CH"),
        ("+39 06 1234 5678", "+390612345678", "allow:country IT"),
        ("+39 02 8901 2345", "+390289012345", "allow:country IT"),  # Milan: 02 89..., not 89x
        ("+39 347 123 4567", "+393471234567", "allow:country IT"),
    ],
)
def test_allowed(policy: DialPolicy, text: str, number: str, rule: str) -> None:
    assert policy.check(text) == Decision(True, number, rule, "")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("+33 1 23 45 67 89", "deny:country FR not allowed"),
        ("+44 20 7946 0000", "deny:country GB not allowed"),
        ("+1 212 555 0100", "deny:country US not allowed"),
        ("+800 1234 5678", "deny:country unknown not allowed"),
        ("+7 495 123 45 67", "deny:country unknown not allowed"),
    ],
)
def test_wrong_country(policy: DialPolicy, text: str, rule: str) -> None:
    d = policy.check(text)
    assert not d.allowed and d.rule == rule
    assert "Austria, Germany, Switzerland and Italy" in d.spoken


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("+436641234567,sofia/gw/+8816", "invalid:dial-string syntax"),
        ("+436641234567,sofia/gateway/evil/+881612345678", "invalid:too long"),
        ("+436641234567|+881612345678", "invalid:dial-string syntax"),
        ("{ignore_early_media=1}+4366412", "invalid:dial-string syntax"),
        ("+436641234567@evil.example", "invalid:dial-string syntax"),
        ("user/1000", "invalid:dial-string syntax"),
        ("+436641234567;fs_path=sip:x", "invalid:dial-string syntax"),
        ("+43664=1234567", "invalid:dial-string syntax"),
        ("${sofia_contact(1000)}", "invalid:channel variable"),
        ("$${default_provider}", "invalid:channel variable"),
        ("+436641234567\r\nbgapi originate", "invalid:line break"),
        ("+436641234567\n", "invalid:line break"),
        ("+43664\t1234567", "invalid:control character"),
        ("+43664\x001234567", "invalid:control character"),
        ("+٤٣٦٦٤١٢٣٤٥٦٧", "invalid:non-ASCII digits"),
        ("+４３６６４１２３４５６７", "invalid:non-ASCII digits"),
        ("+43\u00a0664 1234567", "invalid:non-ASCII characters"),
        ("+43664  1234567", "invalid:dial-string syntax"),
        (" +436641234567", "invalid:leading or trailing space"),
        ("+436641234567 XML default", "invalid:letters"),
        ("+43664123456712345678901234567890123", "invalid:too long"),
        ("+43664*1234567", "invalid:dial-string syntax"),
        ("+43664#1234567", "invalid:dial-string syntax"),
        ("+881612345678'", "invalid:dial-string syntax"),
    ],
)
def test_injection_refused_before_anything(policy: DialPolicy, text: str, rule: str) -> None:
    d = policy.check(text)
    assert d == Decision(False, text, rule, d.spoken)
    with pytest.raises(InvalidNumber):
        policy.normalize(text)


def test_raise_if_denied(policy: DialPolicy) -> None:
    policy.check("+436641234567").raise_if_denied()
    with pytest.raises(PolicyDenied) as info:
        policy.check("+881612345678").raise_if_denied()
    assert info.value.rule.startswith("block:+881")
    assert info.value.spoken


@pytest.mark.parametrize(
    ("caller", "rule", "allowed"),
    [
        ("+436641234567", "allow:caller country AT", True),
        ("06641234567", "allow:caller country AT", True),
        ("00491511234567", "allow:caller country DE", True),
        ("+41446681800", "allow:caller country CH", True),
        ("+390612345678", "allow:caller country IT", True),
        ("+33123456789", "deny:caller country FR", False),
        ("+8816123456789", "deny:caller country unknown", False),
        ("anonymous", "deny:anonymous caller", False),
        ("Anonymous", "deny:anonymous caller", False),
        ("", "deny:anonymous caller", False),
        ("0000000000", "deny:anonymous caller", False),
        ("Restricted", "deny:anonymous caller", False),
        ("PRIVACY", "deny:anonymous caller", False),
        ("unknown", "deny:anonymous caller", False),
        (None, "deny:anonymous caller", False),
        ("1234", "deny:caller invalid:short code or local number without area code", False),
        ("+43664${x}", "deny:caller invalid:channel variable", False),
    ],
)
def test_inbound_caller(policy: DialPolicy, caller: str | None, rule: str, allowed: bool) -> None:
    d = policy.check("+43123456789", caller=caller, direction="in")
    assert (d.allowed, d.rule, d.number) == (allowed, rule, "+43123456789")


@pytest.mark.parametrize("did", ["+43123456789", "43123456789"])
def test_inbound_did_forms(policy: DialPolicy, did: str) -> None:
    assert policy.check(did, caller="+436641234567", direction="in").allowed


@pytest.mark.parametrize("did", ["+431234567890", "0123456789", "1000", "+43123456788"])
def test_inbound_other_destination(policy: DialPolicy, did: str) -> None:
    d = policy.check(did, caller="+436641234567", direction="in")
    assert not d.allowed and d.rule == "deny:not our DID"


def test_is_anonymous_forms() -> None:
    assert all(map(is_anonymous, ["", " ", "anonymous", "0", "000", "Restricted", "Privacy", "Unavailable"]))
    assert not any(map(is_anonymous, ["+436641234567", "0664", "1000"]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"default_country": "XX"}, "default_country: unknown country"),
        ({"outbound": {"countries": ["AT", "ZZ"]}}, "outbound.countries: unknown country"),
        ({"outbound": {"blocked": [{"prefix": "881"}]}}, "outbound.blocked[0].prefix"),
        ({"outbound": {"blocked": [{"prefix": "+881", "short": "118"}]}}, "exactly one of prefix or short"),
        ({"outbound": {"blocked": [{"short": "118"}]}}, "outbound.blocked[0].country"),
        ({"outbound": {"blocked": [{"prefix": "+881", "kind": "cheap"}]}}, "unknown kind"),
        ({"outbound": {"blocked": [{"prefix": "+881", "typo": 1}]}}, "unknown key(s) typo"),
        ({"dids": ["0123456789"]}, "dids[0]: must be E.164"),
        ({"outbund": {}}, "outbund: unknown key"),
        ({"outbound": {"blocks": []}}, "outbound.blocks: unknown key"),
        ({"freeswitch": {"max_session": 5}}, "freeswitch.max_session: unknown key"),
        ({"limits": [1]}, "limits: expected a mapping"),
    ],
)
def test_bad_policy_is_a_config_error(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        DialPolicy.from_mapping(data, source="test.yaml")


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy"):
        DialPolicy.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("outbound: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        DialPolicy.from_file(bad)


def test_transfer_args_only_for_allowed(policy: DialPolicy) -> None:
    assert policy.check("0664 123 45 67").transfer_args() == "+436641234567 XML esl_agent_outbound"
    for text in ["+881612345678", "+4366412,user/1000", "${x}", "+33123456789"]:
        with pytest.raises(PolicyDenied):
            policy.check(text).transfer_args()
    forged = Decision(True, "+43664 XML default", "allow:forged", "")
    with pytest.raises(PolicyDenied, match=r"not E\.164"):
        forged.transfer_args()
