"""Phone numbers to E.164 for contacts and caller-ID lookup.

`to_e164("0664 123 45 67", "AT")` -> "+436641234567". International forms (`+`, `00`) keep their
country code; national forms get the default region's code, with the trunk prefix dropped where the
country dials one (AT, DE, CH, ...) and kept where it is part of the number (Italy). Separators
(spaces, dashes, dots, parentheses, slashes) are ignored and "+43 (0) 664 ..." is understood.
Anything else raises `PhoneNumberError` (a ValueError). The dial policy does its own, stricter
checks before anything is dialled; this module only makes numbers comparable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REGIONS", "PhoneNumberError", "Region", "to_e164", "try_e164"]


class PhoneNumberError(ValueError):
    """The text is not a phone number we can normalise; the message says why."""


@dataclass(frozen=True)
class Region:
    """Dialling rules of one country: calling code, trunk prefix and whether it stays."""

    country_code: str
    trunk_prefix: str = "0"
    keep_trunk: bool = False  # Italy: the leading 0 is part of the number


REGIONS: dict[str, Region] = {
    "AT": Region("43"),
    "DE": Region("49"),
    "CH": Region("41"),
    "IT": Region("39", trunk_prefix="", keep_trunk=True),
    "FR": Region("33"),
    "NL": Region("31"),
    "BE": Region("32"),
    "GB": Region("44"),
    "ES": Region("34", trunk_prefix=""),
    "US": Region("1", trunk_prefix="1"),
    "CA": Region("1", trunk_prefix="1"),
}

_SEPARATORS = re.compile(r"[\s\-./()]+")
_TRUNK_IN_PARENS = re.compile(r"^\+(\d{1,3})\s*\(0\)")
_MIN_DIGITS = 7  # shortest plausible international number incl. country code
_MAX_DIGITS = 15  # E.164 maximum


def to_e164(text: str, default_region: str = "AT") -> str:
    """Normalise a phone number to E.164 ("+<digits>"); raise PhoneNumberError if impossible."""
    if not isinstance(text, str):
        raise PhoneNumberError(f"expected a string, got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise PhoneNumberError("empty phone number")
    if len(raw) > 40:
        raise PhoneNumberError("too long for a phone number")
    raw = _TRUNK_IN_PARENS.sub(r"+\1", raw)  # "+43 (0) 664" -> "+43 664"
    compact = _SEPARATORS.sub("", raw)
    if compact.startswith("+"):
        international, digits = True, compact[1:]
    elif compact.startswith("00"):
        international, digits = True, compact[2:]
    else:
        international, digits = False, compact
    if not digits.isascii() or not digits.isdigit():
        raise PhoneNumberError("a phone number may only hold digits, '+' and separators")
    if international:
        return _checked("+" + _drop_trunk_after_code(digits))
    region = REGIONS.get(default_region.upper())
    if region is None:
        raise PhoneNumberError(f"unknown default region {default_region!r}")
    if region.keep_trunk:
        return _checked("+" + region.country_code + digits)
    if region.trunk_prefix:
        if not digits.startswith(region.trunk_prefix):
            raise PhoneNumberError(
                f"a national number in {default_region.upper()} must start with "
                f"{region.trunk_prefix} (area code missing?)"
            )
        digits = digits[len(region.trunk_prefix):]
    if digits.startswith("0"):
        raise PhoneNumberError("too many leading zeros")
    return _checked("+" + region.country_code + digits)


def try_e164(text: str | None, default_region: str = "AT") -> str | None:
    """Like `to_e164` but returns None for anything that is not a number (caller-ID lookups)."""
    if not text:
        return None
    try:
        return to_e164(text, default_region)
    except PhoneNumberError:
        return None


def _drop_trunk_after_code(digits: str) -> str:
    """'+43 0664...' is a common mistake: drop the 0 where the country does not keep it."""
    for region in REGIONS.values():
        code = region.country_code
        if digits.startswith(code + "0") and not region.keep_trunk and region.trunk_prefix == "0":
            return code + digits[len(code) + 1:]
    return digits


def _checked(number: str) -> str:
    digits = number[1:]
    if digits.startswith("0"):
        raise PhoneNumberError("a country code never starts with 0")
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        raise PhoneNumberError(
            f"an international number has {_MIN_DIGITS} to {_MAX_DIGITS} digits, got {len(digits)}"
        )
    return number
