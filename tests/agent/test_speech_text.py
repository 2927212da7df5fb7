"""Text prepared for TTS: digits spelled, times and short numbers natural, addresses spoken."""

import pytest

from esl_agent.agent.speech_text import for_speech, number_words, spell_digits

EN = [
    ("Call 0664 1234567.", "Call zero six six four, one two three four five six seven."),
    ("+43 664 1234567", "plus four three, six six four, one two three four five six seven"),
    ("Your order number is 12345.", "Your order number is one two three four five."),
    ("I have 3 items.", "I have three items."),
    ("See you at 10:30.", "See you at ten thirty."),
    ("At 10:00 or 9:05?", "At ten o'clock or nine oh five?"),
    ("It is 3.5 percent.", "It is three point five percent."),
    ("About 1,500 people", "About one thousand five hundred people"),
    ("42 and 117", "forty-two and one hundred seventeen"),
    ("Mail anna.berger@example.com now", "Mail anna dot berger at example dot com now"),
    ("Write to info-2@my_firm.at", "Write to info dash two at my underscore firm dot at"),
    ("the 1st, 2nd, 3rd and 22nd", "the first, second, third and twenty-second"),
    ("It costs €5 or 12.50 €.", "It costs five euros or twelve euros fifty."),
    ("50% & more", "fifty percent and more"),
    ("**Sure.** Here it is", "Sure. Here it is"),
    ("- first point", "first point"),
    ("No numbers here.", "No numbers here."),
    ("-5 degrees", "minus five degrees"),
    ("3-4 days", "three to four days"),
    ("on 2026-11-25", "on November twenty-fifth, twenty twenty-six"),
    ("born 30.6.1905", "born June thirtieth, nineteen oh five"),
    ("Reference A1B2C3", "Reference A one B two C three"),
    ("COVID-19", "COVID-nineteen"),
    ("13.13.2020", "13.13.2020"),  # not a date: left alone rather than misread
]


@pytest.mark.parametrize(("text", "spoken"), EN)
def test_english(text: str, spoken: str) -> None:
    assert for_speech(text, "en-US") == spoken


DE = [
    ("Rufen Sie 0664 1234567 an.", "Rufen Sie null sechs sechs vier, eins zwei drei vier fünf sechs sieben an."),
    ("Um 14:30 Uhr.", "Um vierzehn Uhr dreißig."),
    ("um 1:00", "um ein Uhr"),
    ("3 Artikel", "drei Artikel"),
    ("21 Tage, 101 Mal", "einundzwanzig Tage, einhunderteins Mal"),
    ("3,5 Prozent und 1.500 Leute", "drei Komma fünf Prozent und eintausendfünfhundert Leute"),
    ("Das kostet 3,50 €.", "Das kostet drei Euro fünfzig."),
    ("anna.berger@example.com", "anna Punkt berger ät example Punkt com"),
    ("am 1.3.2027 um 10:00", "am ersten März zweitausendsiebenundzwanzig um zehn Uhr"),
    ("der 3.10.1990", "der dritte Oktober neunzehnhundertneunzig"),
    ("2-3 Tage", "zwei bis drei Tage"),
    ("Kennung B2B", "Kennung B zwei B"),
]


@pytest.mark.parametrize(("text", "spoken"), DE)
def test_german(text: str, spoken: str) -> None:
    assert for_speech(text, "de-AT") == spoken


@pytest.mark.parametrize(
    ("n", "en", "de"),
    [
        (0, "zero", "null"),
        (1, "one", "eins"),
        (16, "sixteen", "sechzehn"),
        (70, "seventy", "siebzig"),
        (99, "ninety-nine", "neunundneunzig"),
        (100, "one hundred", "einhundert"),
        (1001, "one thousand one", "eintausendeins"),
        (2026, "two thousand twenty-six", "zweitausendsechsundzwanzig"),
        (3_000_000, "three million", "drei Millionen"),
    ],
)
def test_number_words(n: int, en: str, de: str) -> None:
    assert number_words(n, "en-GB") == en
    assert number_words(n, "de-DE") == de


def test_spell_digits_groups() -> None:
    assert spell_digits("0664-12/34") == "zero six six four, one two, three four"
    assert spell_digits("+41 44", "de-CH") == "plus vier eins, vier vier"
