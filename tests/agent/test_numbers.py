"""Phone number normalisation to E.164, table-driven."""

import pytest

from esl_agent.agent.numbers import PhoneNumberError, to_e164, try_e164

GOOD = [
    ("0664 1234567", "AT", "+436641234567"),
    ("0664/123 45 67", "AT", "+436641234567"),
    ("+43 664 1234567", "AT", "+436641234567"),
    ("0043 664 1234567", "AT", "+436641234567"),
    ("+43 (0) 664-123.45.67", "AT", "+436641234567"),
    ("+43 0664 1234567", "AT", "+436641234567"),
    ("(01) 234 56 78", "AT", "+4312345678"),
    ("030 12345678", "DE", "+493012345678"),
    ("0171-1234567", "DE", "+491711234567"),
    ("044 668 18 00", "CH", "+41446681800"),
    ("06 1234 5678", "IT", "+390612345678"),
    ("347 123 4567", "IT", "+393471234567"),
    ("+39 06 1234 5678", "DE", "+390612345678"),
    ("0039 06 12345678", "AT", "+390612345678"),
    ("+1 (415) 555-0100", "AT", "+14155550100"),
    ("  +436641234567  ", "de", "+436641234567"),
]


@pytest.mark.parametrize(("text", "region", "expected"), GOOD)
def test_normalises(text: str, region: str, expected: str) -> None:
    assert to_e164(text, region) == expected


BAD = [
    "",
    "   ",
    "hello",
    "0664 123 4567 x12",
    "+43 664 1234567; uuid_kill all",
    "++436641234567",
    "+0436641234567",
    "664 1234567",  # AT national without trunk prefix
    "00 00 1234567",
    "+43 12",  # too short
    "+43 1234 5678 9012 3456",  # too long
    "0664١٢٣٤٥٦٧",  # non-ASCII digits
    "*43#",
]


@pytest.mark.parametrize("text", BAD)
def test_rejects_garbage(text: str) -> None:
    with pytest.raises(PhoneNumberError):
        to_e164(text, "AT")
    assert try_e164(text, "AT") is None


def test_error_is_value_error_and_unknown_region() -> None:
    assert issubclass(PhoneNumberError, ValueError)
    with pytest.raises(PhoneNumberError, match="region"):
        to_e164("0664 1234567", "XX")


def test_try_e164_none() -> None:
    assert try_e164(None) is None
    assert try_e164("0664 1234567") == "+436641234567"
