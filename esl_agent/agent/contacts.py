"""Contacts: who is calling (caller ID) and whom the caller means (a spoken name, fuzzy).

Two stores share one interface, `ContactStore`:

- `YamlContactStore` reads `conf/contacts.yaml` (see conf/contacts.example.yaml) and reloads by
  itself when the file changes (mtime and size first, then a content hash).
- `SqliteContactStore` keeps bigger lists in SQLite: caller-ID lookups are indexed queries, the
  names for fuzzy matching are cached in memory and refreshed when the database changes.

`open_store(settings)` picks the store by the file extension. Numbers are stored in E.164; a
caller ID in national or international form finds the same contact. `version()` changes whenever
the contents change, so the greeting warmer knows when to re-render.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml
from rapidfuzz import fuzz, process

from esl_agent.agent.numbers import PhoneNumberError, to_e164, try_e164
from esl_agent.config import ContactSettings
from esl_agent.errors import ConfigError

__all__ = [
    "DEFAULT_MIN_SCORE",
    "Contact",
    "ContactStore",
    "SqliteContactStore",
    "YamlContactStore",
    "contact_from_mapping",
    "open_store",
]

log = logging.getLogger(__name__)

DEFAULT_MIN_SCORE = 70.0

# Words a caller (or the model) puts around a name; dropped before matching (folded spelling).
_NOT_NAME = frozenset({
    "mister", "mr", "mrs", "missus", "misses", "miss", "ms", "madam", "madame", "sir", "doctor",
    "dr", "doktor", "prof", "professor", "herr", "frau", "fraulein", "signor", "signora",
    "signore", "please", "bitte", "the", "to", "with", "zu", "mit", "der", "die", "den", "dem",
})
_EXTENSION = re.compile(r"[1-9][0-9]{1,5}")  # internal extensions: 2 to 6 digits


@dataclass(frozen=True)
class Contact:
    """A person the agent knows.

    Attributes:
        id: stable key (greeting cache, logs); defaults to a slug of the name.
        name: how the agent addresses them ("Anna Berger").
        numbers: their phone numbers in E.164.
        greeting: an own greeting text instead of the configured one ({name} allowed).
        transfer: where `transfer_call` sends callers who ask for them: an E.164 number or an
            internal extension; empty = their first number.
        notes: context for the model ("prefers German", "calls about invoices").
        aliases: other names callers use ("Mark", "Mister Berger").
    """

    id: str
    name: str
    numbers: tuple[str, ...] = ()
    greeting: str | None = None
    transfer: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def transfer_target(self) -> str:
        """The number or extension to transfer to; '' if the contact has none."""
        return self.transfer or (self.numbers[0] if self.numbers else "")


@runtime_checkable
class ContactStore(Protocol):
    """Read access to contacts, shared by the tools, the prompt and the greeting cache."""

    def by_number(self, caller_id: str | None) -> Contact | None:
        """The contact owning this number (any national/international form), or None."""
        ...

    def by_name(
        self, spoken: str, min_score: float = DEFAULT_MIN_SCORE, limit: int = 5
    ) -> list[tuple[Contact, float]]:
        """Contacts whose name matches a spoken name, best first, scores 0..100."""
        ...

    def all(self) -> list[Contact]:
        """Every contact."""
        ...

    def version(self) -> str:
        """A short string that changes whenever the contents change."""
        ...


# ------------------------------------------------------------------------------- parsing


def contact_from_mapping(data: Any, default_region: str, where: str = "contact") -> Contact:
    """Build a Contact from a YAML/dict entry; raise ConfigError naming `where` and the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with at least 'name'")
    allowed = {"id", "name", "numbers", "number", "greeting", "transfer", "notes", "aliases"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: required, a non-empty string")
    raw_numbers = data.get("numbers", [])
    if "number" in data:
        raw_numbers = [data["number"], *(raw_numbers or [])]
    if isinstance(raw_numbers, (str, int)):
        raw_numbers = [raw_numbers]
    if not isinstance(raw_numbers, list):
        raise ConfigError(f"{where}.numbers: expected a list of phone numbers")
    numbers: list[str] = []
    for i, raw in enumerate(raw_numbers):
        try:
            e164 = to_e164(str(raw), default_region)
        except PhoneNumberError as exc:
            raise ConfigError(f"{where}.numbers[{i}]: {exc}") from None
        if e164 not in numbers:
            numbers.append(e164)
    aliases = data.get("aliases") or []
    if isinstance(aliases, str):
        aliases = [aliases]
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError(f"{where}.aliases: expected a list of names")
    greeting = data.get("greeting")
    if greeting is not None and not isinstance(greeting, str):
        raise ConfigError(f"{where}.greeting: expected a string")
    notes = data.get("notes") or ""
    if not isinstance(notes, str):
        raise ConfigError(f"{where}.notes: expected a string")
    cid = data.get("id") or _slug(name)
    if not isinstance(cid, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cid):
        raise ConfigError(f"{where}.id: letters, digits, '_', '.', '-' only (max 64)")
    return Contact(
        id=cid,
        name=name.strip(),
        numbers=tuple(numbers),
        greeting=greeting.strip() if greeting and greeting.strip() else None,
        transfer=_transfer_target(data.get("transfer"), default_region, f"{where}.transfer"),
        notes=notes.strip(),
        aliases=tuple(a.strip() for a in aliases if a.strip()),
    )


def _transfer_target(value: Any, default_region: str, where: str) -> str:
    if value is None or value == "":
        return ""
    text = str(value).strip()
    if _EXTENSION.fullmatch(text):
        return text
    try:
        return to_e164(text, default_region)
    except PhoneNumberError as exc:
        raise ConfigError(f"{where}: not an extension or phone number: {exc}") from None


def _slug(name: str) -> str:
    folded = _fold(name)
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    return slug[:64] or "contact"


def _fold(text: str) -> str:
    """Lower-case, strip accents and German umlaut spellings so STT variants compare equal."""
    text = text.casefold().replace("ß", "ss")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    for two, one in (("ae", "a"), ("oe", "o"), ("ue", "u")):
        text = text.replace(two, one)
    return text


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", _fold(text))


def _query(spoken: str) -> str:
    words = [w for w in _words(spoken) if w not in _NOT_NAME]
    return " ".join(words)


# ------------------------------------------------------------------------------- index


class _Index:
    """An immutable snapshot: contacts, number map, fuzzy candidates and a content version."""

    def __init__(self, contacts: Sequence[Contact], source: str) -> None:
        self.contacts = tuple(contacts)
        self.by_id: dict[str, Contact] = {}
        self.by_number: dict[str, Contact] = {}
        for c in self.contacts:
            if c.id in self.by_id:
                raise ConfigError(f"{source}: two contacts share the id {c.id!r}")
            self.by_id[c.id] = c
            for n in c.numbers:
                other = self.by_number.get(n)
                if other is not None:
                    raise ConfigError(
                        f"{source}: contacts {other.id!r} and {c.id!r} share a phone number"
                    )
                self.by_number[n] = c
        self.names: list[str] = []  # fuzzy candidates: full names, aliases, single name words
        self.owners: list[str] = []
        self.full_names: list[str] = []
        self.full_owners: list[str] = []
        for c in self.contacts:
            seen: set[str] = set()
            for phrase in (c.name, *c.aliases):
                q = _query(phrase)
                if not q:
                    continue
                self.full_names.append(q)
                self.full_owners.append(c.id)
                for cand in (q, *q.split()):
                    if cand not in seen and len(cand) >= 2:
                        seen.add(cand)
                        self.names.append(cand)
                        self.owners.append(c.id)
        self.version = _version_of(self.contacts)

    def match(self, spoken: str, min_score: float, limit: int) -> list[tuple[Contact, float]]:
        q = _query(spoken)
        if not q:
            return []
        best: dict[str, float] = {}
        for choices, owners, scorer in (
            (self.names, self.owners, fuzz.ratio),
            (self.full_names, self.full_owners, fuzz.token_sort_ratio),
        ):
            for _, score, i in process.extract(
                q, choices, scorer=scorer, score_cutoff=min_score, limit=None
            ):
                cid = owners[i]
                best[cid] = max(best.get(cid, 0.0), float(score))
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], self.by_id[kv[0]].name))
        return [(self.by_id[cid], round(score, 1)) for cid, score in ranked[:limit]]


def _version_of(contacts: Iterable[Contact]) -> str:
    payload = json.dumps([asdict(c) for c in contacts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------------- YAML


class YamlContactStore:
    """Contacts from a YAML file, reloaded automatically when the file changes.

    A missing file is an empty store (and picked up once it appears). A broken edit keeps the
    last good contents and logs a warning; only the first load raises ConfigError.
    """

    _RACY_SECONDS = 2.0  # a file modified this recently is re-hashed even if mtime looks equal

    def __init__(self, path: str | os.PathLike[str], default_region: str = "AT") -> None:
        self.path = Path(path)
        self.default_region = default_region
        self._stat: tuple[int, int, int] | None = None
        self._file_hash = ""
        self._index = _Index((), str(self.path))
        self._refresh(initial=True)

    def by_number(self, caller_id: str | None) -> Contact | None:
        number = try_e164(caller_id, self.default_region)
        return self._current().by_number.get(number) if number else None

    def by_name(
        self, spoken: str, min_score: float = DEFAULT_MIN_SCORE, limit: int = 5
    ) -> list[tuple[Contact, float]]:
        return self._current().match(spoken, min_score, limit)

    def all(self) -> list[Contact]:
        return list(self._current().contacts)

    def version(self) -> str:
        return self._current().version

    def _current(self) -> _Index:
        self._refresh(initial=False)
        return self._index

    def _refresh(self, initial: bool) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._stat is not None or initial:
                self._stat, self._file_hash = None, ""
                self._index = _Index((), str(self.path))
            return
        stat_key = (st.st_mtime_ns, st.st_size, st.st_ino)
        racy = time.time() - st.st_mtime < self._RACY_SECONDS
        if stat_key == self._stat and not racy:
            return
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            if initial:
                raise ConfigError(f"{self.path}: cannot read contacts: {exc}") from None
            log.warning("contacts file unreadable, keeping the last contents", extra={"err": str(exc)})
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._file_hash:
            self._stat = stat_key
            return
        try:
            index = _Index(self._parse(data), str(self.path))
        except ConfigError as exc:
            if initial:
                raise
            log.warning("contacts file invalid, keeping the last good contents: %s", exc)
            self._stat, self._file_hash = stat_key, digest  # do not re-parse until it changes
            return
        self._stat, self._file_hash, self._index = stat_key, digest, index
        if not initial:
            log.info("contacts reloaded", extra={"contacts": len(index.contacts)})

    def _parse(self, data: bytes) -> list[Contact]:
        try:
            doc = yaml.safe_load(data.decode("utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: invalid YAML: {exc}") from None
        if isinstance(doc, Mapping):
            unknown = sorted(set(doc) - {"contacts"})
            if unknown:
                raise ConfigError(f"{self.path}: {unknown[0]}: unknown key (allowed: contacts)")
            entries = doc.get("contacts") or []
        else:
            entries = doc
        if not isinstance(entries, list):
            raise ConfigError(f"{self.path}: contacts: expected a list")
        return [
            contact_from_mapping(e, self.default_region, f"{self.path}: contacts[{i}]")
            for i, e in enumerate(entries)
        ]


# ------------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    greeting TEXT,
    transfer TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    aliases TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS contact_numbers (
    number TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    position INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS contact_numbers_by_contact ON contact_numbers(contact_id);
"""


class SqliteContactStore:
    """Contacts in SQLite for bigger lists, same interface as the YAML store.

    Caller-ID lookups are indexed queries. Fuzzy name matching and `version()` use an in-memory
    snapshot rebuilt only when the database changed (our writes or another process's).
    """

    def __init__(self, path: str | os.PathLike[str], default_region: str = "AT") -> None:
        self.path = Path(path)
        self.default_region = default_region
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        self._seen_version: tuple[int, int] | None = None
        self._writes = 0
        self._index = _Index((), str(self.path))

    def close(self) -> None:
        self._db.close()

    # reads

    def by_number(self, caller_id: str | None) -> Contact | None:
        number = try_e164(caller_id, self.default_region)
        if not number:
            return None
        row = self._db.execute(
            "SELECT contact_id FROM contact_numbers WHERE number = ?", (number,)
        ).fetchone()
        return self._load_one(row[0]) if row else None

    def by_name(
        self, spoken: str, min_score: float = DEFAULT_MIN_SCORE, limit: int = 5
    ) -> list[tuple[Contact, float]]:
        return self._current().match(spoken, min_score, limit)

    def all(self) -> list[Contact]:
        return list(self._current().contacts)

    def version(self) -> str:
        return self._current().version

    # writes

    def upsert(self, contact: Contact) -> None:
        """Insert or replace one contact (numbers must be E.164 or normalisable)."""
        self.replace_many([contact], clear=False)

    def delete(self, contact_id: str) -> None:
        self._db.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))
        self._writes += 1

    def replace_many(self, contacts: Iterable[Contact], clear: bool = True) -> None:
        """Write contacts in one transaction; `clear` drops everything else first (imports)."""
        rows = [self._checked(c) for c in contacts]
        with _transaction(self._db):
            if clear:
                self._db.execute("DELETE FROM contacts")
            for c in rows:
                self._db.execute("DELETE FROM contacts WHERE id = ?", (c.id,))
                self._db.execute(
                    "INSERT INTO contacts (id, name, greeting, transfer, notes, aliases) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (c.id, c.name, c.greeting, c.transfer, c.notes, json.dumps(list(c.aliases))),
                )
                for pos, n in enumerate(c.numbers):
                    owner = self._db.execute(
                        "SELECT contact_id FROM contact_numbers WHERE number = ?", (n,)
                    ).fetchone()
                    if owner:
                        raise ConfigError(
                            f"{self.path}: contacts {owner[0]!r} and {c.id!r} share a phone number"
                        )
                    self._db.execute(
                        "INSERT INTO contact_numbers (number, contact_id, position) VALUES (?, ?, ?)",
                        (n, c.id, pos),
                    )
        self._writes += 1

    # internals

    def _checked(self, c: Contact) -> Contact:
        data = asdict(c)
        data["numbers"] = list(c.numbers)
        data["aliases"] = list(c.aliases)
        return contact_from_mapping(data, self.default_region, f"{self.path}: {c.id}")

    def _current(self) -> _Index:
        (data_version,) = self._db.execute("PRAGMA data_version").fetchone()
        key = (int(data_version), self._writes)
        if key != self._seen_version:
            self._index = _Index(self._load_all(), str(self.path))
            self._seen_version = key
        return self._index

    def _load_all(self) -> list[Contact]:
        numbers: dict[str, list[str]] = {}
        for number, cid in self._db.execute(
            "SELECT number, contact_id FROM contact_numbers ORDER BY contact_id, position"
        ):
            numbers.setdefault(cid, []).append(number)
        rows = self._db.execute(
            "SELECT id, name, greeting, transfer, notes, aliases FROM contacts ORDER BY id"
        ).fetchall()
        return [self._row(r, numbers.get(r[0], [])) for r in rows]

    def _load_one(self, cid: str) -> Contact | None:
        row = self._db.execute(
            "SELECT id, name, greeting, transfer, notes, aliases FROM contacts WHERE id = ?", (cid,)
        ).fetchone()
        if row is None:
            return None
        nums = [
            n
            for (n,) in self._db.execute(
                "SELECT number FROM contact_numbers WHERE contact_id = ? ORDER BY position", (cid,)
            )
        ]
        return self._row(row, nums)

    @staticmethod
    def _row(row: Sequence[Any], numbers: list[str]) -> Contact:
        cid, name, greeting, transfer, notes, aliases = row
        return Contact(
            id=cid,
            name=name,
            numbers=tuple(numbers),
            greeting=greeting,
            transfer=transfer or "",
            notes=notes or "",
            aliases=tuple(json.loads(aliases or "[]")),
        )


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")

# ------------------------------------------------------------------------------- factory


def open_store(settings: ContactSettings) -> YamlContactStore | SqliteContactStore:
    """Open the contacts store named in the config: .yaml/.yml or .sqlite/.db."""
    suffix = Path(settings.path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return YamlContactStore(settings.path, settings.default_region)
    if suffix in (".sqlite", ".sqlite3", ".db"):
        return SqliteContactStore(settings.path, settings.default_region)
    raise ConfigError(f"contacts.path: {settings.path!r}: use a .yaml or .sqlite file")

