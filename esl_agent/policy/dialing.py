"""The dial policy: one object that decides every number the controller dials or answers.

`DialPolicy.from_file("conf/policy.yaml")` loads the policy; `check(number)` returns a `Decision`
naming the rule that decided. The order is fixed and is the same in the rendered dialplan
(esl_agent.policy.render): refuse anything that is not plainly a phone number (dial-string
syntax, channel variables, control characters, non-ASCII digits, too long) before anything else,
then the blocked prefixes, then the E.164 shape, then the country allowlist. The only command
text this module hands out is `Decision.transfer_args()` / `Decision.originate_target()`, and only
for an allowed, plain E.164 number (both raise PolicyDenied otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from esl_agent.errors import ConfigError, PolicyDenied

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
OUTBOUND_CONTEXT = "esl_agent_outbound"  # the rendered dialplan context for every outbound leg
MAX_INPUT_CHARS = 32
MAX_DIGITS = 15

# Calling codes of the countries a policy may name (ITU-T E.164 list). `trunk_prefix` is the
# national prefix dropped in E.164; Italy has none: its leading 0 stays ("+39 06 ..." Rome).
COUNTRIES: dict[str, tuple[str, str, str]] = {
    # iso: (calling code, trunk prefix, English name)
    "AT": ("43", "0", "Austria"),
    "DE": ("49", "0", "Germany"),
    "CH": ("41", "0", "Switzerland"),
    "IT": ("39", "", "Italy"),
    "LI": ("423", "0", "Liechtenstein"),
    "FR": ("33", "0", "France"),
    "GB": ("44", "0", "the United Kingdom"),
    "NL": ("31", "0", "the Netherlands"),
    "BE": ("32", "0", "Belgium"),
    "LU": ("352", "", "Luxembourg"),
    "ES": ("34", "", "Spain"),
    "PT": ("351", "", "Portugal"),
    "PL": ("48", "", "Poland"),
    "CZ": ("420", "", "the Czech Republic"),
    "SK": ("421", "0", "Slovakia"),
    "HU": ("36", "06", "Hungary"),
    "SI": ("386", "0", "Slovenia"),
    "HR": ("385", "0", "Croatia"),
    "DK": ("45", "", "Denmark"),
    "SE": ("46", "0", "Sweden"),
    "NO": ("47", "", "Norway"),
    "US": ("1", "1", "the United States"),
}

ANONYMOUS_CALLERS = ("", "anonymous", "restricted", "privacy", "unknown", "unavailable")
# Regex for the same set (a run of zeros is FreeSWITCH's "no caller ID", 0000000000).
ANONYMOUS_REGEX = r"^(?:|0+|(?i:anonymous|restricted|privacy|unknown|unavailable))$"

_SEPARATORS = " -.()"
_DIAL_STRING_CHARS = set(",|{}@/;=[]<>'\"`\\:!&^~*#%?$")

SPOKEN = {
    "premium": "I'm sorry, I can't connect you to that number: calls to premium-rate and "
    "shared-cost services are not allowed.",
    "satellite": "I'm sorry, I can't connect you to that number: calls to satellite networks "
    "are not allowed.",
    "international-network": "I'm sorry, I can't connect you to that number: calls to "
    "international network numbers are not allowed.",
    "directory": "I'm sorry, I can't connect you to directory enquiry services.",
    "carrier-selection": "I'm sorry, I can't dial numbers with a call-by-call carrier prefix.",
    "invalid": "I'm sorry, that doesn't look like a phone number I can dial.",
    "inbound": "I'm sorry, this number cannot take your call.",
}


class InvalidNumber(ValueError):
    """The text is not a phone number the policy can read; `rule` says why."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"not a dialable number: {reason}")
        self.text = text
        self.reason = reason

    @property
    def rule(self) -> str:
        return f"invalid:{self.reason}"


@dataclass(frozen=True)
class Decision:
    """The verdict on one number: allowed or not, by which rule, and what to tell the caller."""

    allowed: bool
    number: str  # E.164 when the text could be read, else the raw text
    rule: str  # e.g. "block:+881 GMSS satellite", "allow:country AT", "invalid:dial-string syntax"
    spoken: str = ""  # a plain sentence for the caller on denial

    def raise_if_denied(self) -> None:
        """Raise PolicyDenied when the number is not allowed."""
        if not self.allowed:
            raise PolicyDenied(self.number, self.rule, self.spoken)

    def transfer_args(self) -> str:
        """`<E.164> XML esl_agent_outbound` for uuid_transfer; PolicyDenied if not allowed.

        The only way this module hands out text for a command: an allowed decision's number has
        passed E164, so it is '+' and digits and cannot carry dial-string syntax.
        """
        self.raise_if_denied()
        if not E164.match(self.number):  # defence in depth: never build from anything else
            raise PolicyDenied(self.number, "invalid:not E.164", SPOKEN["invalid"])
        return f"{self.number} XML {OUTBOUND_CONTEXT}"

    def originate_target(self) -> str:
        """`loopback/<E.164>/esl_agent_outbound/XML` for originate; PolicyDenied if not allowed.

        The call leg runs through the rendered outbound context, so the dialplan checks it again.
        """
        self.raise_if_denied()
        if not E164.match(self.number):
            raise PolicyDenied(self.number, "invalid:not E.164", SPOKEN["invalid"])
        return f"loopback/{self.number}/{OUTBOUND_CONTEXT}/XML"


@dataclass(frozen=True)
class BlockRule:
    """A blocked destination: an E.164 prefix, or a short code of one country."""

    label: str
    kind: str
    prefix: str = ""  # "+881"
    short: str = ""  # "118", dialled without trunk prefix in `country`
    country: str = ""

    @property
    def rule(self) -> str:
        return f"block:{self.prefix or self.short} {self.label}"


@dataclass(frozen=True)
class DialPolicy:
    """Dial policy loaded from conf/policy.yaml (see that file for every key)."""

    default_country: str = "AT"
    outbound_countries: tuple[str, ...] = ("AT", "DE", "CH", "IT")
    caller_countries: tuple[str, ...] = ("AT", "DE", "CH", "IT")
    blocked: tuple[BlockRule, ...] = ()
    dids: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    source: str = "<policy>"

    # ----------------------------------------------------------------------------------
    # Loading

    @classmethod
    def from_file(cls, path: str | Path) -> DialPolicy:
        """Load and validate a policy file; raise ConfigError naming the file and key."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read policy: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML: {exc}") from None
        return cls.from_mapping(data, source=str(p))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<policy>") -> DialPolicy:
        """Build a policy from a parsed mapping (tests, overrides)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: the policy must be a mapping")
        _known_keys(data, _TOP_KEYS, source, "")
        for section, keys in _SECTION_KEYS.items():
            value = data.get(section)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {section}: expected a mapping")
            _known_keys(value or {}, keys, source, f"{section}.")
        default = _country(data.get("default_country", "AT"), source, "default_country")
        outbound = data.get("outbound") or {}
        inbound = data.get("inbound") or {}
        out_c = tuple(_country(c, source, "outbound.countries") for c in outbound.get("countries", ()))
        in_c = tuple(
            _country(c, source, "inbound.caller_countries") for c in inbound.get("caller_countries", ())
        )
        rules = tuple(_block_rule(r, i, source) for i, r in enumerate(outbound.get("blocked") or ()))
        dids = []
        for i, did in enumerate(data.get("dids") or ()):
            if not isinstance(did, str) or not E164.match(did):
                raise ConfigError(f"{source}: dids[{i}]: must be E.164 like +43123456789, got {did!r}")
            dids.append(did)
        return cls(default, out_c, in_c, rules, tuple(dids), raw=dict(data), source=source)

    # ----------------------------------------------------------------------------------
    # Normalisation

    def normalize(self, text: str, default_country: str | None = None) -> str:
        """Return `text` as E.164, or raise InvalidNumber (short codes included)."""
        country = default_country or self.default_country
        candidate = _candidate(text, country)
        if not candidate.startswith("+"):
            raise InvalidNumber(text, "short code or local number without area code")
        _check_shape(text, candidate)
        return candidate

    # ----------------------------------------------------------------------------------
    # Decisions

    def check(
        self,
        number: str,
        *,
        caller: str | None = None,
        direction: Literal["in", "out"] = "out",
    ) -> Decision:
        """Decide one number. direction "out": may we dial it; "in": may this caller reach it."""
        if direction == "in":
            return self._check_inbound(number, caller)
        if direction != "out":
            raise ValueError(f"direction must be 'in' or 'out', got {direction!r}")
        try:
            candidate = _candidate(number, self.default_country)
        except InvalidNumber as exc:
            return _invalid(number, exc)
        if not candidate.startswith("+"):
            for rule in self.blocked:
                if rule.short and rule.country == self.default_country and candidate.startswith(rule.short):
                    return Decision(False, candidate, rule.rule, SPOKEN.get(rule.kind, SPOKEN["premium"]))
            return _invalid(number, InvalidNumber(number, "short code or local number without area code"))
        for rule in self.blocked:
            if rule.prefix and candidate.startswith(rule.prefix):
                return Decision(False, candidate, rule.rule, SPOKEN.get(rule.kind, SPOKEN["premium"]))
        try:
            _check_shape(number, candidate)
        except InvalidNumber as exc:
            return _invalid(number, exc)
        iso = country_of(candidate)
        if iso in self.outbound_countries:
            return Decision(True, candidate, f"allow:country {iso}", "")
        names = _join_names(self.outbound_countries)
        return Decision(
            False,
            candidate,
            f"deny:country {iso or 'unknown'} not allowed",
            f"I'm sorry, I can only connect you to numbers in {names}.",
        )

    def _check_inbound(self, number: str, caller: str | None) -> Decision:
        try:
            _syntax(number)
        except InvalidNumber as exc:
            return _invalid(number, exc)
        did = self.match_did(number)
        if did is None:
            return Decision(False, number, "deny:not our DID", SPOKEN["inbound"])
        if caller is None or is_anonymous(caller):
            return Decision(False, did, "deny:anonymous caller", SPOKEN["inbound"])
        try:
            e164 = self.normalize(caller)
        except InvalidNumber as exc:
            return Decision(False, did, f"deny:caller {exc.rule}", SPOKEN["inbound"])
        iso = country_of(e164)
        if iso in self.caller_countries:
            return Decision(True, did, f"allow:caller country {iso}", "")
        return Decision(False, did, f"deny:caller country {iso or 'unknown'}", SPOKEN["inbound"])

    def match_did(self, number: str) -> str | None:
        """The DID `number` addresses (E.164 with or without '+'), or None."""
        m = re.fullmatch(r"\+?([1-9]\d{7,14})", number)
        if not m:
            return None
        for did in self.dids:
            if did[1:] == m.group(1):
                return did
        return None

    # ----------------------------------------------------------------------------------
    # Shared with the renderer, so the dialplan uses exactly these patterns

    def allow_regex(self, iso: str) -> str:
        """Dialplan regex of a valid E.164 number of country `iso`."""
        cc, trunk, _ = COUNTRIES[iso]
        first = "[1-9]" if trunk.startswith("0") else r"\d"
        lo, hi = 8 - len(cc) - 1, 15 - len(cc) - 1
        return rf"^\+{cc}{first}\d{{{lo},{hi}}}$"

    def caller_allow_regex(self) -> str:
        """Dialplan regex of an allowed caller ID (international or national form)."""
        alts = []
        for iso in self.caller_countries:
            cc, trunk, _ = COUNTRIES[iso]
            first = "[1-9]" if trunk.startswith("0") else r"\d"
            lo, hi = 8 - len(cc) - 1, 15 - len(cc) - 1
            alts.append(rf"(?:\+|00){cc}{first}\d{{{lo},{hi}}}")
        if self.default_country in self.caller_countries:
            cc, trunk, _ = COUNTRIES[self.default_country]
            lo, hi = 8 - len(cc) - 1, 15 - len(cc) - 1
            if trunk:
                alts.append(rf"{trunk}[1-9]\d{{{lo},{hi}}}")
            else:
                alts.append(rf"(?!00)\d{{{lo + 1},{hi + 1}}}")
        return "^(?:" + "|".join(alts) + ")$"


# --------------------------------------------------------------------------------------------
# Helpers


def is_anonymous(caller: str) -> bool:
    """True for every form of a withheld caller ID."""
    text = caller.strip()
    return text.lower() in ANONYMOUS_CALLERS or (text != "" and set(text) == {"0"})


def country_of(e164: str) -> str:
    """ISO code of the country an E.164 number belongs to ('' if not in COUNTRIES)."""
    best = ""
    best_len = 0
    for iso, (cc, _, _) in COUNTRIES.items():
        if e164.startswith("+" + cc) and len(cc) > best_len:
            best, best_len = iso, len(cc)
    return best


def _syntax(text: str) -> str:
    """Refuse anything that is not plainly a written phone number; return the digits form."""
    if not isinstance(text, str):
        raise InvalidNumber(str(text), "not text")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidNumber(text, "too long")
    if "\r" in text or "\n" in text:
        raise InvalidNumber(text, "line break")
    if "${" in text or "$" in text:
        raise InvalidNumber(text, "channel variable")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidNumber(text, "control character")
    if any(ch in _DIAL_STRING_CHARS for ch in text):
        raise InvalidNumber(text, "dial-string syntax")
    if any(not ch.isascii() for ch in text):
        reason = "non-ASCII digits" if any(ch.isdigit() for ch in text if not ch.isascii()) else (
            "non-ASCII characters"
        )
        raise InvalidNumber(text, reason)
    stripped = text.strip(" ")
    if stripped != text:
        raise InvalidNumber(text, "leading or trailing space")
    if any(ch.isalpha() for ch in text):
        raise InvalidNumber(text, "letters")
    if "  " in text or "\t" in text:
        raise InvalidNumber(text, "dial-string syntax")
    body = text.replace("(0)", "", 1) if text.startswith("+") else text
    if body.count("+") > (1 if body.startswith("+") else 0):
        raise InvalidNumber(text, "misplaced +")
    allowed = set("0123456789+") | set(_SEPARATORS)
    if any(ch not in allowed for ch in body):
        raise InvalidNumber(text, "dial-string syntax")
    digits = "".join(ch for ch in body if ch.isdigit() or ch == "+")
    if len(digits.lstrip("+")) > MAX_DIGITS + 2:
        raise InvalidNumber(text, "too long")
    if not digits.lstrip("+"):
        raise InvalidNumber(text, "no digits")
    return digits


def _candidate(text: str, country: str) -> str:
    """E.164 candidate ('+...') or a short code (digits without '+')."""
    digits = _syntax(text)
    if digits.startswith("+"):
        return digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    cc, trunk, _ = COUNTRIES[country]
    if not trunk:
        return "+" + cc + digits
    if digits.startswith(trunk) and trunk.startswith("0"):
        return "+" + cc + digits[len(trunk):]
    return digits


def _check_shape(text: str, candidate: str) -> None:
    if len(candidate) - 1 > MAX_DIGITS:
        raise InvalidNumber(text, "too long")
    if not E164.match(candidate):
        raise InvalidNumber(text, "not E.164 (+ and 8 to 15 digits)")
    iso = country_of(candidate)
    if iso:
        cc, trunk, _ = COUNTRIES[iso]
        if trunk.startswith("0") and candidate[1 + len(cc):].startswith("0"):
            raise InvalidNumber(text, "national trunk prefix after the country code")


def _invalid(text: str, exc: InvalidNumber) -> Decision:
    return Decision(False, text, exc.rule, SPOKEN["invalid"])


def _join_names(isos: Iterable[str]) -> str:
    names = [COUNTRIES[i][2] for i in isos]
    if not names:
        return "no country"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


_TOP_KEYS = frozenset(
    {"default_country", "trunk", "dids", "inbound", "outbound", "limits", "rates", "freeswitch", "fail2ban"}
)
_SECTION_KEYS = {
    "trunk": frozenset({"name", "proxy", "register", "cidrs", "username_file", "password_file"}),
    "inbound": frozenset({"caller_countries"}),
    "outbound": frozenset({"countries", "blocked"}),
    "limits": frozenset({"calls_per_minute", "concurrent_outbound", "daily_spend_cap"}),
    "rates": frozenset(
        {"currency", "per_minute", "inbound_per_minute", "platform_per_minute", "billing_increment_s"}
    ),
    "freeswitch": frozenset(
        {"conf_dir", "log_file", "controller", "event_socket_listen", "sessions_per_second", "max_sessions",
         "sip_ports", "rtp_start", "rtp_end", "apology_file", "fallback_extension", "fallback_context",
         "voicemail_box"}
    ),
    "fail2ban": frozenset({"bantime", "findtime", "maxretry", "recidive_bantime"}),
}


def _known_keys(data: Mapping[str, Any], allowed: frozenset[str], source: str, prefix: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ConfigError(
            f"{source}: {prefix}{unknown[0]}: unknown key (allowed here: {', '.join(sorted(allowed))})"
        )


def _country(value: Any, source: str, path: str) -> str:
    if not isinstance(value, str) or value not in COUNTRIES:
        raise ConfigError(f"{source}: {path}: unknown country {value!r} (known: {', '.join(COUNTRIES)})")
    return value


def _block_rule(item: Any, index: int, source: str) -> BlockRule:
    path = f"outbound.blocked[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{source}: {path}: expected a mapping with prefix or short")
    unknown = set(item) - {"prefix", "short", "country", "label", "kind"}
    if unknown:
        raise ConfigError(f"{source}: {path}: unknown key(s) {', '.join(sorted(unknown))}")
    label = str(item.get("label") or "")
    kind = str(item.get("kind") or "premium")
    if kind not in SPOKEN:
        raise ConfigError(f"{source}: {path}.kind: unknown kind {kind!r}")
    prefix = item.get("prefix")
    short = item.get("short")
    if bool(prefix) == bool(short):
        raise ConfigError(f"{source}: {path}: give exactly one of prefix or short")
    if prefix is not None:
        if not isinstance(prefix, str) or not re.fullmatch(r"\+[1-9]\d{0,8}", prefix):
            raise ConfigError(f"{source}: {path}.prefix: must look like +881, got {prefix!r}")
        return BlockRule(label=label, kind=kind, prefix=prefix)
    if not isinstance(short, str) or not re.fullmatch(r"[1-9]\d{0,5}", short):
        raise ConfigError(f"{source}: {path}.short: must be digits like 118, got {short!r}")
    country = _country(item.get("country"), source, f"{path}.country")
    return BlockRule(label=label, kind=kind, short=short, country=country)
