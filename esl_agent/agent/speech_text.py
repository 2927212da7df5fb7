"""Text prepared for text-to-speech: digits, times, e-mail addresses and symbols as words.

`for_speech("Call 0664 1234567 at 10:30.", "en-US")`
-> "Call zero six six four, one two three four five six seven at ten thirty."

Phone numbers and other digit strings (a leading 0 or +, or five digits and more) are spelled digit
by digit, their groups separated by commas so the voice pauses where the writer grouped them. Short
numbers stay natural ("3 items" -> "three items", "3.5" -> "three point five"). English and German
tables; the language comes from the config ("de-AT", "de-DE" -> German, anything else English).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["for_speech", "number_words", "spell_digits"]


@dataclass(frozen=True)
class _Lang:
    digits: tuple[str, ...]
    plus: str
    at: str
    dot: str
    dash: str
    underscore: str
    point: str  # decimal separator spoken
    decimal_char: str  # decimal separator written
    thousands_char: str
    percent: str
    and_word: str
    cardinal: Callable[[int], str]
    time: Callable[[int, int], str]
    currency: dict[str, tuple[str, str]]  # symbol -> (singular, plural)


# ------------------------------------------------------------------------------- English

_EN_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_EN_TENS = [
    "_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
]


def _en_cardinal(n: int) -> str:
    if n < 0:
        return "minus " + _en_cardinal(-n)
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_EN_ONES[hundreds]} hundred" + (f" {_en_cardinal(rest)}" if rest else "")
    for size, word in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            high, rest = divmod(n, size)
            return f"{_en_cardinal(high)} {word}" + (f" {_en_cardinal(rest)}" if rest else "")
    raise AssertionError(n)


def _en_time(hours: int, minutes: int) -> str:
    if minutes == 0:
        return f"{_en_cardinal(hours)} o'clock"
    if minutes < 10:
        return f"{_en_cardinal(hours)} oh {_en_cardinal(minutes)}"
    return f"{_en_cardinal(hours)} {_en_cardinal(minutes)}"


# ------------------------------------------------------------------------------- German

_DE_ONES = [
    "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn",
    "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn",
    "neunzehn",
]
_DE_TENS = [
    "_", "_", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig",
    "neunzig",
]


def _de_cardinal(n: int) -> str:
    if n < 0:
        return "minus " + _de_cardinal(-n)
    if n < 20:
        return _DE_ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        if not ones:
            return _DE_TENS[tens]
        return ("ein" if ones == 1 else _DE_ONES[ones]) + "und" + _DE_TENS[tens]
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = "ein" if hundreds == 1 else _DE_ONES[hundreds]
        return f"{head}hundert" + (_de_cardinal(rest) if rest else "")
    if n < 10**6:
        high, rest = divmod(n, 1000)
        head = "ein" if high == 1 else _de_cardinal(high)
        return f"{head}tausend" + (_de_cardinal(rest) if rest else "")
    for size, one, many in ((10**9, "eine Milliarde", "Milliarden"), (10**6, "eine Million", "Millionen")):
        if n >= size:
            high, rest = divmod(n, size)
            head = one if high == 1 else f"{_de_cardinal(high)} {many}"
            return head + (f" {_de_cardinal(rest)}" if rest else "")
    raise AssertionError(n)


def _de_time(hours: int, minutes: int) -> str:
    spoken_hours = "ein" if hours == 1 else _de_cardinal(hours)
    if minutes == 0:
        return f"{spoken_hours} Uhr"
    return f"{spoken_hours} Uhr {_de_cardinal(minutes)}"


_EN = _Lang(
    digits=tuple(_EN_ONES[:10]),
    plus="plus", at="at", dot="dot", dash="dash", underscore="underscore",
    point="point", decimal_char=".", thousands_char=",", percent="percent", and_word="and",
    cardinal=_en_cardinal, time=_en_time,
    currency={"€": ("euro", "euros"), "$": ("dollar", "dollars"), "£": ("pound", "pounds"),
              "EUR": ("euro", "euros"), "USD": ("dollar", "dollars"), "CHF": ("franc", "francs")},
)
_DE = _Lang(
    digits=tuple(_DE_ONES[:10]),
    plus="plus", at="ät", dot="Punkt", dash="Strich", underscore="Unterstrich",
    point="Komma", decimal_char=",", thousands_char=".", percent="Prozent", and_word="und",
    cardinal=_de_cardinal, time=_de_time,
    currency={"€": ("Euro", "Euro"), "$": ("Dollar", "Dollar"), "£": ("Pfund", "Pfund"),
              "EUR": ("Euro", "Euro"), "USD": ("Dollar", "Dollar"), "CHF": ("Franken", "Franken")},
)


def _lang(language: str) -> _Lang:
    return _DE if language.lower().startswith("de") else _EN


# ------------------------------------------------------------------------------- public helpers


def number_words(n: int, language: str = "en-US") -> str:
    """A whole number as words: 42 -> "forty-two" / "zweiundvierzig"."""
    return _lang(language).cardinal(n)


def spell_digits(text: str, language: str = "en-US") -> str:
    """Spell a digit string digit by digit; groups split by separators become comma pauses."""
    lang = _lang(language)
    groups = [g for g in re.split(r"[\s\-/.()]+", text.strip()) if g]
    spoken = []
    for group in groups:
        words = []
        for ch in group:
            if ch == "+":
                words.append(lang.plus)
            elif ch.isdigit():
                words.append(lang.digits[int(ch)])
        if words:
            spoken.append(" ".join(words))
    return ", ".join(spoken)


# ------------------------------------------------------------------------------- rewriting

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"\b(?:https?://)?(?:www\.)[\w-]+(?:\.[\w-]+)+(?:/[\w./-]*)?|\bhttps?://[\w./-]+")
_TIME = re.compile(r"(?<![\d:.,])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])(\s*Uhr\b)?")
_ORDINAL_EN = re.compile(r"\b(\d{1,3})(st|nd|rd|th)\b")
# A phone-like run: optional +, digits with single separators between them (no dot/comma).
_DIGIT_RUN = re.compile(r"(?<![\w.,+])(\+?\d(?:[ \-/]?\d)*)(?![\w]|[.,]\d)")
_EN_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\w]|[.,]\d)")
_DE_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d+))?(?![\w]|[.,]\d)")
_CURRENCY_BEFORE = re.compile(r"(€|\$|£)\s?(\d[\d.,]*\d|\d)")
_CURRENCY_AFTER = re.compile(r"(\d[\d.,]*\d|\d)\s?(€|EUR|USD|CHF)(?!\w)")
_MARKDOWN = re.compile(r"\*\*|__|`|^\s*#+\s*|^\s*[-*•]\s+", re.MULTILINE)

_ISO_DATE = re.compile(r"(?<![\d.\-])(\d{4})-(\d{2})-(\d{2})(?![\d\-])")
_DOT_DATE = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{4})(?![\d.])")
_RANGE = re.compile(r"(?<![\w.,\-])(\d{1,4})\s?[-–]\s?(\d{1,4})(?![\w\-]|[.,]\d)")
_MINUS = re.compile(r"(?<![\w\-])-(?=\d)")
_CODE = re.compile(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{2,12}\b(?![.,]\d)")
_DE_DATIVE = re.compile(r"\b(?:am|vom|zum|ab|bis)\s*$", re.IGNORECASE)

_EN_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]
_DE_MONTHS = [
    "Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
    "Oktober", "November", "Dezember",
]

_EN_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


def for_speech(text: str, language: str = "en-US") -> str:
    """Rewrite text so a TTS voice reads numbers, times, addresses and symbols as intended."""
    lang = _lang(language)
    text = _MARKDOWN.sub("", text)
    text = _EMAIL.sub(lambda m: _speak_address(m.group(0), lang), text)
    text = _URL.sub(lambda m: _speak_address(re.sub(r"^https?://", "", m.group(0)), lang), text)
    text = _TIME.sub(lambda m: lang.time(int(m.group(1)), int(m.group(2))), text)
    text = _ISO_DATE.sub(lambda m: _date(m, int(m.group(3)), int(m.group(2)), int(m.group(1)), lang), text)
    text = _DOT_DATE.sub(lambda m: _date(m, int(m.group(1)), int(m.group(2)), int(m.group(3)), lang), text)
    text = _currency(text, lang)
    if lang is _EN:
        text = _ORDINAL_EN.sub(lambda m: _en_ordinal(int(m.group(1))), text)
    text = _CODE.sub(lambda m: _spell_code(m.group(0), lang), text)
    text = _DIGIT_RUN.sub(lambda m: _digit_run(m.group(1), lang), text)
    to = " to " if lang is _EN else " bis "
    text = _RANGE.sub(lambda m: m.group(1) + to + m.group(2), text)
    text = _MINUS.sub("minus ", text)
    pattern = _DE_NUMBER if lang is _DE else _EN_NUMBER
    text = pattern.sub(lambda m: _number(m.group(1), m.group(2), lang), text)
    text = text.replace("%", f" {lang.percent}").replace("&", f" {lang.and_word} ")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _date(m: re.Match[str], day: int, month: int, year: int, lang: _Lang) -> str:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    if lang is _EN:
        return f"{_EN_MONTHS[month - 1]} {_en_ordinal(day)}, {_en_year(year)}"
    dative = bool(_DE_DATIVE.search(m.string[: m.start()]))
    return f"{_de_ordinal(day, dative)} {_DE_MONTHS[month - 1]} {_de_year(year)}"


def _en_year(year: int) -> str:
    if 1100 <= year <= 1999 or 2010 <= year <= 2099:
        high, low = divmod(year, 100)
        if low == 0:
            return f"{_en_cardinal(high)} hundred"
        return f"{_en_cardinal(high)} " + (f"oh {_en_cardinal(low)}" if low < 10 else _en_cardinal(low))
    return _en_cardinal(year)


def _de_year(year: int) -> str:
    if 1100 <= year <= 1999:
        high, low = divmod(year, 100)
        return f"{_de_cardinal(high)}hundert" + (_de_cardinal(low) if low else "")
    return _de_cardinal(year)


def _de_ordinal(n: int, dative: bool) -> str:
    stem = {1: "erst", 3: "dritt", 7: "siebt", 8: "acht"}.get(n)
    if stem is None:
        stem = _de_cardinal(n) + ("t" if n < 20 else "st")
    return stem + ("en" if dative else "e")


def _spell_code(code: str, lang: _Lang) -> str:
    """'A1B2' -> 'A one B two': codes and references read character by character."""
    if re.fullmatch(r"\d{1,3}(?:st|nd|rd|th)", code, re.IGNORECASE):
        return code  # an English ordinal, not a code
    return " ".join(lang.digits[int(ch)] if ch.isdigit() else ch.upper() for ch in code)


def _digit_run(run: str, lang: _Lang) -> str:
    """Spell phone-like runs; leave short numbers ("3", "3 4") to the number pass."""
    digits = sum(ch.isdigit() for ch in run)
    if run.startswith("+") or (run.startswith("0") and digits > 1) or digits >= 5:
        return spell_digits(run, "de" if lang is _DE else "en")
    return run


def _number(whole: str, fraction: str | None, lang: _Lang) -> str:
    value = int(whole.replace(lang.thousands_char, ""))
    spoken = lang.cardinal(value)
    if fraction:
        spoken += f" {lang.point} " + " ".join(lang.digits[int(d)] for d in fraction)
    return spoken


def _currency(text: str, lang: _Lang) -> str:
    def words(amount: str, symbol: str) -> str:
        singular, plural = lang.currency[symbol]
        normal = amount.replace(lang.thousands_char, "")
        whole, _, cents = normal.partition(lang.decimal_char)
        if not whole.isdigit() or (cents and not cents.isdigit()):
            return f"{amount} {plural}"
        unit = singular if int(whole) == 1 and not cents else plural
        spoken = f"{lang.cardinal(int(whole))} {unit}"
        if cents and int(cents):
            spoken += f" {lang.cardinal(int(cents[:2].ljust(2, '0')))}"
        return spoken

    text = _CURRENCY_BEFORE.sub(lambda m: words(m.group(2), m.group(1)), text)
    return _CURRENCY_AFTER.sub(lambda m: words(m.group(1), m.group(2)), text)


def _en_ordinal(n: int) -> str:
    words = _en_cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words else words.rpartition(" ")
    if last in _EN_ORDINALS:
        last = _EN_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"


def _speak_address(address: str, lang: _Lang) -> str:
    out: list[str] = []
    for token in re.split(r"([@.\-_+/])", address):
        if not token:
            continue
        if token == "@":
            out.append(lang.at)
        elif token == ".":
            out.append(lang.dot)
        elif token == "-":
            out.append(lang.dash)
        elif token == "_":
            out.append(lang.underscore)
        elif token == "+":
            out.append(lang.plus)
        elif token == "/":
            out.append("slash")
        elif token.isdigit():
            out.append(" ".join(lang.digits[int(d)] for d in token))
        else:
            out.append(token)
    return " ".join(out)
