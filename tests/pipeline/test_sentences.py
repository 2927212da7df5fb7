"""SentenceSplitter: a table of tricky texts, each fed whole, split at every position, char by char."""

from __future__ import annotations

import pytest

from esl_agent.pipeline.sentences import SentenceSplitter

CASES: list[tuple[str, list[str]]] = [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Great! See you soon", ["Great!", "See you soon"]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
    ("It costs 3.5 euros. Anything else?", ["It costs 3.5 euros.", "Anything else?"]),
    ("The meeting is at 10.30 tomorrow. Fine?", ["The meeting is at 10.30 tomorrow.", "Fine?"]),
    ("We open at 10:30. See you.", ["We open at 10:30.", "See you."]),
    ("Dr. Smith is in. Mr. Jones is not.", ["Dr. Smith is in.", "Mr. Jones is not."]),
    ("Bring an ID, e.g. Passport or licence. Thanks.", ["Bring an ID, e.g. Passport or licence.", "Thanks."]),
    ("Bitte z.B. Montag. Danke.", ["Bitte z.B. Montag.", "Danke."]),
    ("Apples, pears etc. and more. Done.", ["Apples, pears etc. and more.", "Done."]),
    ("Write to max.muster@example.com. Thanks!", ["Write to max.muster@example.com.", "Thanks!"]),
    ("See https://example.com/a.b?x=1 for details. Bye.", ["See https://example.com/a.b?x=1 for details.", "Bye."]),
    ("Well... maybe tomorrow. Okay?", ["Well... maybe tomorrow.", "Okay?"]),
    ("Hmm… Let me check. Done.", ["Hmm…", "Let me check.", "Done."]),
    ("Let me think… yes, that works.", ["Let me think… yes, that works."]),
    ("Der Termin ist am 24. Dezember. Passt das?", ["Der Termin ist am 24. Dezember.", "Passt das?"]),
    ("Ich habe 3. Dann gehen wir.", ["Ich habe 3.", "Dann gehen wir."]),
    ("Guten Tag! Wie kann ich helfen?", ["Guten Tag!", "Wie kann ich helfen?"]),
    ("First line\nSecond line", ["First line", "Second line"]),
    ("Options:\n1. Sales\n2. Support", ["Options:", "1. Sales", "2. Support"]),
    ("Great! 😀 See you.", ["Great!", "😀 See you."]),
    ('He said "hello." Then he left.', ['He said "hello."', "Then he left."]),
    ("Call J. Smith now. Ok.", ["Call J. Smith now.", "Ok."]),
    ("Das kostet ca. 20 Euro, bzw. etwas mehr. Ok?", ["Das kostet ca. 20 Euro, bzw. etwas mehr.", "Ok?"]),
    ("Hausnummer Nr. 5 in der Haupt-Str. 3. Gut.", ["Hausnummer Nr. 5 in der Haupt-Str. 3.", "Gut."]),
    ("Meet at 10 a.m. tomorrow. Fine.", ["Meet at 10 a.m. tomorrow.", "Fine."]),
    ("Call +43 664 1234567. Thanks! 👍", ["Call +43 664 1234567.", "Thanks!", "👍"]),
    ("Prices are approx. 5 dollars (plus tax.) Done.", ["Prices are approx. 5 dollars (plus tax.)", "Done."]),
    ("Wait — what?! No way…", ["Wait — what?!", "No way…"]),
    ("no final punctuation here", ["no final punctuation here"]),
    ("", []),
    ("   ", []),
]


def split_whole(text: str, max_clause: int = 120) -> list[str]:
    s = SentenceSplitter(max_clause)
    return s.push(text) + s.flush()


def split_at(text: str, cut: int, max_clause: int = 120) -> list[str]:
    s = SentenceSplitter(max_clause)
    return s.push(text[:cut]) + s.push(text[cut:]) + s.flush()


def split_chars(text: str, max_clause: int = 120) -> list[str]:
    s = SentenceSplitter(max_clause)
    out: list[str] = []
    for ch in text:
        out += s.push(ch)
    return out + s.flush()


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_whole_text(text: str, expected: list[str]) -> None:
    assert split_whole(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_every_split_position(text: str, expected: list[str]) -> None:
    for cut in range(len(text) + 1):
        assert split_at(text, cut) == expected, f"cut at {cut}"
    assert split_chars(text) == expected


def test_sentence_is_emitted_as_soon_as_it_is_certain() -> None:
    s = SentenceSplitter()
    assert s.push("Hello there.") == []  # could still be "there.com"
    assert s.push(" How") == ["Hello there."]
    assert s.push(" are you?") == []
    assert s.push(" I") == ["How are you?"]
    assert s.flush() == ["I"]


def test_abbreviation_is_not_emitted_even_before_a_capital() -> None:
    s = SentenceSplitter()
    assert s.push("Please ask Dr. Miller") == []
    assert s.flush() == ["Please ask Dr. Miller"]


def test_long_clause_is_cut_at_the_next_comma_after_the_bound() -> None:
    text = "one two three four, five six seven eight, nine ten eleven, twelve"
    expected = ["one two three four, five six seven eight,", "nine ten eleven, twelve"]
    assert split_whole(text, max_clause=25) == expected
    for cut in range(len(text) + 1):
        assert split_at(text, cut, max_clause=25) == expected


def test_comma_inside_number_does_not_cut() -> None:
    text = "That is exactly 1,000,000 euros for the whole thing, and more"
    assert split_whole(text, max_clause=10) == ["That is exactly 1,000,000 euros for the whole thing,", "and more"]


def test_splitter_is_reusable_after_flush() -> None:
    s = SentenceSplitter()
    s.push("First. ")
    assert s.flush() == ["First."]
    assert s.push("Second! Third") == ["Second!"]
    assert s.flush() == ["Third"]
