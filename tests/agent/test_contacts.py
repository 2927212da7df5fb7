"""Contact stores: caller-ID lookup in any number form, fuzzy names, reload, SQLite parity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esl_agent.agent.contacts import (
    Contact,
    SqliteContactStore,
    YamlContactStore,
    open_store,
)
from esl_agent.config import ContactSettings
from esl_agent.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "contacts.example.yaml"

CONTACTS_YAML = """
contacts:
  - name: Markus
    numbers: ["0664 1234567"]
    aliases: [Mark]
    transfer: "201"
  - name: Anna Berger
    numbers: ["+43 1 234 56 78", "0676 765 43 21"]
    greeting: "Hi {name}!"
    notes: Accounting.
  - name: Hanna Schmidt
    numbers: ["0699 11223344"]
  - id: support
    name: Technical Support
    aliases: [helpdesk]
    transfer: "300"
"""


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def yaml_store(tmp_path: Path) -> YamlContactStore:
    p = tmp_path / "contacts.yaml"
    p.write_text(CONTACTS_YAML, encoding="utf-8")
    return YamlContactStore(p, "AT")


@pytest.fixture
def sqlite_store(tmp_path: Path, yaml_store: YamlContactStore) -> SqliteContactStore:
    store = SqliteContactStore(tmp_path / "contacts.sqlite", "AT")
    store.replace_many(yaml_store.all())
    return store


@pytest.fixture(params=["yaml", "sqlite"])
def store(request: pytest.FixtureRequest, yaml_store, sqlite_store):  # type: ignore[no-untyped-def]
    return yaml_store if request.param == "yaml" else sqlite_store


@pytest.mark.parametrize(
    "caller_id",
    ["+436767654321", "06767654321", "0676 765 43 21", "00436767654321", "+43 (0) 676 7654321"],
)
def test_by_number_any_form(store, caller_id: str) -> None:  # type: ignore[no-untyped-def]
    contact = store.by_number(caller_id)
    assert contact is not None and contact.id == "anna-berger"
    assert contact.numbers == ("+4312345678", "+436767654321")


@pytest.mark.parametrize("caller_id", [None, "", "anonymous", "1001", "+436760000000"])
def test_by_number_unknown(store, caller_id) -> None:  # type: ignore[no-untyped-def]
    assert store.by_number(caller_id) is None


@pytest.mark.parametrize(
    ("spoken", "expected"),
    [
        ("Anna Berger", "anna-berger"),
        ("Anna", "anna-berger"),  # first name only
        ("Mister Berger", "anna-berger"),
        ("Frau Berger", "anna-berger"),
        ("Ana Burger", "anna-berger"),  # STT typos
        ("Marcus", "markus"),
        ("mark", "markus"),  # alias
        ("the helpdesk", "support"),
        ("Hanna Schmitt", "hanna-schmidt"),
    ],
)
def test_by_name_fuzzy(store, spoken: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    matches = store.by_name(spoken)
    assert matches, spoken
    assert matches[0][0].id == expected
    assert all(matches[0][1] >= s for _, s in matches)


def test_by_name_no_match(store) -> None:  # type: ignore[no-untyped-def]
    assert store.by_name("Peter Zimmermann") == []
    assert store.by_name("") == []
    assert store.by_name("Mister") == []


def test_similar_names_both_returned(store) -> None:  # type: ignore[no-untyped-def]
    ids = [c.id for c, _ in store.by_name("Hanna", min_score=70)]
    assert ids[0] == "hanna-schmidt" and "anna-berger" in ids


def test_fields_parsed(store) -> None:  # type: ignore[no-untyped-def]
    by_id = {c.id: c for c in store.all()}
    assert by_id["markus"].transfer_target == "201"
    assert by_id["anna-berger"].transfer_target == "+4312345678"
    assert by_id["anna-berger"].greeting == "Hi {name}!"
    assert by_id["support"].numbers == ()
    assert len(store.version()) == 16


def test_yaml_reloads_on_change(tmp_path: Path) -> None:
    p = tmp_path / "contacts.yaml"
    p.write_text(CONTACTS_YAML, encoding="utf-8")
    store = YamlContactStore(p)
    v1 = store.version()
    assert store.by_name("Markus")[0][0].name == "Markus"
    p.write_text(CONTACTS_YAML.replace("name: Markus", "name: Marko Huber"), encoding="utf-8")
    _bump_mtime(p)
    assert store.by_number("0664 1234567").name == "Marko Huber"  # type: ignore[union-attr]
    assert store.version() != v1


def test_yaml_reload_same_size_same_mtime(tmp_path: Path) -> None:
    """An edit within the file system's mtime granularity is still seen (content hash)."""
    p = tmp_path / "contacts.yaml"
    p.write_text(CONTACTS_YAML, encoding="utf-8")
    st = p.stat()
    store = YamlContactStore(p)
    p.write_text(CONTACTS_YAML.replace("Markus", "Markos"), encoding="utf-8")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.by_number("+436641234567").name == "Markos"  # type: ignore[union-attr]


def test_yaml_comment_edit_keeps_version(tmp_path: Path) -> None:
    p = tmp_path / "contacts.yaml"
    p.write_text(CONTACTS_YAML, encoding="utf-8")
    store = YamlContactStore(p)
    v1 = store.version()
    p.write_text("# a comment\n" + CONTACTS_YAML, encoding="utf-8")
    _bump_mtime(p)
    assert store.version() == v1


def test_yaml_broken_edit_keeps_last_good(tmp_path: Path) -> None:
    p = tmp_path / "contacts.yaml"
    p.write_text(CONTACTS_YAML, encoding="utf-8")
    store = YamlContactStore(p)
    p.write_text("contacts:\n  - name: Bad\n    numbers: [hello]\n", encoding="utf-8")
    _bump_mtime(p)
    assert store.by_number("+436641234567").name == "Markus"  # type: ignore[union-attr]


def test_yaml_missing_file_is_empty_then_appears(tmp_path: Path) -> None:
    p = tmp_path / "contacts.yaml"
    store = YamlContactStore(p)
    assert store.all() == []
    p.write_text(CONTACTS_YAML, encoding="utf-8")
    assert len(store.all()) == 4


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("contacts:\n  - numbers: ['0664 1234567']\n", "name"),
        ("contacts:\n  - name: A\n    numbers: ['12ab']\n", "numbers[0]"),
        ("contacts:\n  - name: A\n    phone: '0664 1234567'\n", "phone"),
        ("contacts:\n  - {name: A, numbers: ['0664 1']}\n", "numbers[0]"),
        ("contacts:\n  - {name: A, numbers: ['06641234567']}\n  - {name: B, numbers: ['+436641234567']}\n",
         "share a phone number"),
        ("contacts:\n  - {name: A}\n  - {name: a}\n", "share the id"),
        ("contacts:\n  - {name: A, transfer: 'x; hangup'}\n", "transfer"),
    ],
)
def test_yaml_invalid_first_load(tmp_path: Path, body: str, fragment: str) -> None:
    p = tmp_path / "contacts.yaml"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        YamlContactStore(p)
    assert fragment in str(err.value)


def test_sqlite_changes_and_version(tmp_path: Path, sqlite_store: SqliteContactStore) -> None:
    v1 = sqlite_store.version()
    sqlite_store.upsert(Contact(id="markus", name="Markus Huber", numbers=("0664 1234567",)))
    assert sqlite_store.by_number("+436641234567").name == "Markus Huber"  # type: ignore[union-attr]
    assert sqlite_store.by_name("Huber")[0][0].id == "markus"
    v2 = sqlite_store.version()
    assert v2 != v1
    sqlite_store.delete("markus")
    assert sqlite_store.by_number("+436641234567") is None
    assert sqlite_store.version() not in (v1, v2)


def test_sqlite_sees_other_connection(tmp_path: Path, sqlite_store: SqliteContactStore) -> None:
    v1 = sqlite_store.version()
    other = SqliteContactStore(sqlite_store.path)
    other.upsert(Contact(id="new", name="Neue Person", numbers=("+436600000001",)))
    other.close()
    assert sqlite_store.by_name("Neue Person")[0][0].id == "new"
    assert sqlite_store.version() != v1


def test_sqlite_rejects_duplicate_number(sqlite_store: SqliteContactStore) -> None:
    with pytest.raises(ConfigError, match="share a phone number"):
        sqlite_store.upsert(Contact(id="x", name="X", numbers=("+436641234567",)))
    assert sqlite_store.by_number("+436641234567").id == "markus"  # type: ignore[union-attr]


def test_open_store_by_extension(tmp_path: Path) -> None:
    assert isinstance(open_store(ContactSettings(path=str(EXAMPLE))), YamlContactStore)
    sq = open_store(ContactSettings(path=str(tmp_path / "c.sqlite")))
    assert isinstance(sq, SqliteContactStore)
    with pytest.raises(ConfigError):
        open_store(ContactSettings(path=str(tmp_path / "c.csv")))


def test_example_file_loads() -> None:
    store = YamlContactStore(EXAMPLE, "AT")
    names = {c.name for c in store.all()}
    assert {"Markus", "Anna Berger"} <= names
    assert store.by_number("0664 1234567").name == "Markus"  # type: ignore[union-attr]
    assert store.by_number("+39 06 1234 5678").name == "Giulia Rossi"  # type: ignore[union-attr]
