"""Pre-rendered greetings: the caller hears a personal greeting at answer with no TTS on the path.

Each greeting is a file `<owner>__<voice>__<sha256(text)[:16]>.wav` (8 kHz 16-bit mono, which
FreeSWITCH plays directly) in `greetings.cache_dir`; `owner` is "generic" (unknown callers, the
greeting that asks for their name) or "contact-<id>". Changing a contact's name or greeting, the
greeting texts or the voice changes the key, so only the affected files are rendered again, and
files no longer wanted are removed.

At answer the call asks `lookup(caller_number)`: a caller-ID lookup, a hash of a short string and
an exists check. A miss returns None (the call falls back to live TTS with `choose().text`) and
schedules a render of that key. `start_warmer()` runs a background greenlet that re-warms whenever
the contacts (`ContactStore.version()`), the greeting texts (the config file) or the voice change.
Two warms never render the same key twice; TTS providers do their heavy work in gevent's
threadpool, so warming never blocks calls.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import gevent.event
import gevent.lock
import gevent.pool

from esl_agent.agent.contacts import Contact, ContactStore
from esl_agent.agent.speech_text import for_speech
from esl_agent.config import GreetingSettings
from esl_agent.errors import ConfigError, ProviderError
from esl_agent.logs import redact_number
from esl_agent.media.wavfile import resample, write_wav
from esl_agent.providers.base import NoTurn, TextToSpeech

__all__ = ["GREETING_RATE", "GreetingCache", "GreetingChoice", "WarmReport"]

log = logging.getLogger(__name__)

GREETING_RATE = 8000  # FreeSWITCH plays 8 kHz L16 WAV on narrowband calls without resampling
GENERIC = "generic"
_FILE = re.compile(r"(?:generic|contact-[A-Za-z0-9_.-]+)__[A-Za-z0-9_.-]+__[0-9a-f]{16}\.wav")
_TMP = re.compile(r"\..+\.tmp")
_MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class GreetingChoice:
    """The greeting for one caller: its key, text, contact (None = unknown) and file path."""

    key: str
    text: str
    contact: Contact | None
    path: Path


@dataclass
class WarmReport:
    """What one warm did: keys rendered, files removed, keys that failed, keys already present."""

    rendered: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    present: int = 0


class GreetingCache:
    """Greeting files per contact and voice, rendered in the background, looked up at answer.

    Args:
        settings: texts, cache directory, warm-on-start and the watch interval.
        tts: the provider that renders greetings (its `voice` is part of the key).
        contacts: the contact store; `version()` tells the warmer when to re-render.
        config_path: the agent config file; when its mtime changes the warmer reloads the
            greeting settings through `load_settings` (default: `esl_agent.config.load`).
        language: language of the texts, for spelling digits (`speech_text.for_speech`).
        on_warmed: called with the report after every warm (metrics, tests).
    """

    def __init__(
        self,
        settings: GreetingSettings,
        tts: TextToSpeech,
        contacts: ContactStore,
        *,
        config_path: str | os.PathLike[str] | None = None,
        load_settings: Callable[[], GreetingSettings] | None = None,
        language: str = "en-US",
        on_warmed: Callable[[WarmReport], None] | None = None,
    ) -> None:
        self.settings = settings
        self.tts = tts
        self.contacts = contacts
        self.language = language
        self.on_warmed = on_warmed
        self._config_path = Path(config_path) if config_path else None
        self._load_settings = load_settings or (self._default_loader if config_path else None)
        self._config_mtime = self._mtime(self._config_path)
        self._inflight: dict[str, gevent.event.Event] = {}
        self._warm_lock = gevent.lock.Semaphore()
        self._jobs = gevent.pool.Group()
        self._wake = gevent.event.Event()
        self._warmer: gevent.Greenlet | None = None
        self._stopping = False
        self._failures: set[str] = set()
        self._backoff = 0.0
        self._retry_at = 0.0

    # ------------------------------------------------------------------------------ naming

    @property
    def cache_dir(self) -> Path:
        return Path(self.settings.cache_dir)

    def text_for(self, contact: Contact | None) -> str:
        """The greeting text: the contact's own, the known-caller text with {name}, or generic."""
        if contact is None:
            return self.settings.generic_text
        template = contact.greeting or self.settings.known_text
        return template.replace("{name}", contact.name)

    def key_for(self, contact: Contact | None, text: str | None = None, tts: TextToSpeech | None = None) -> str:
        """Cache key: owner + voice + sha256(text)[:16]."""
        owner = GENERIC if contact is None else f"contact-{_safe_id(contact.id)}"
        voice = _slug(f"{(tts or self.tts).name}-{(tts or self.tts).voice}")
        body = self.text_for(contact) if text is None else text
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
        return f"{owner}__{voice}__{digest}"

    def path_for(self, key: str) -> Path:
        return self.cache_dir / f"{key}.wav"

    # ------------------------------------------------------------------------------ call path

    def choose(self, caller_number: str | None) -> GreetingChoice:
        """The greeting this caller should hear (no TTS, no rendering)."""
        contact = self.contacts.by_number(caller_number) if caller_number else None
        text = self.text_for(contact)
        key = self.key_for(contact, text)
        return GreetingChoice(key, text, contact, self.path_for(key))

    def lookup(self, caller_number: str | None) -> Path | None:
        """The ready greeting file for this caller, or None (and a render is scheduled)."""
        choice = self.choose(caller_number)
        if choice.path.exists():
            return choice.path
        log.info("greeting cache miss", extra={"key": choice.key, "number": redact_number(caller_number)})
        self._schedule(choice)
        return None

    def miss(self, caller_number: str | None) -> gevent.Greenlet | None:
        """Schedule a render of this caller's greeting; returns the job (None if not needed)."""
        choice = self.choose(caller_number)
        if choice.path.exists():
            return None
        return self._schedule(choice)

    # ------------------------------------------------------------------------------ warming

    def warm(self) -> WarmReport:
        """Render every missing greeting and remove files of keys no longer wanted."""
        with self._warm_lock:
            report = WarmReport()
            tts = self.tts
            plan: dict[str, str] = {}
            # Only contacts with a number can be recognised by caller ID, so only they need a file.
            callers = [c for c in self.contacts.all() if c.numbers]
            for contact in [None, *callers]:
                text = self.text_for(contact)
                plan[self.key_for(contact, text, tts)] = text
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            for key, text in plan.items():
                if self.path_for(key).exists():
                    report.present += 1
                    continue
                if self._render(key, text, tts):
                    report.rendered.append(key)
                elif not self.path_for(key).exists():
                    report.failed.append(key)
            report.removed = self._remove_unwanted(set(plan))
            self._note_failures(report.failed)
        if report.rendered or report.removed or report.failed:
            log.info(
                "greetings warmed",
                extra={"rendered": len(report.rendered), "removed": len(report.removed),
                       "failed": len(report.failed), "present": report.present},
            )
        if self.on_warmed is not None:
            self.on_warmed(report)
        return report

    def start_warmer(self) -> gevent.Greenlet:
        """Start the background greenlet that keeps the cache in step with its inputs."""
        if self._warmer is None or self._warmer.dead:
            self._stopping = False
            self._warmer = gevent.spawn(self._watch)
        return self._warmer

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the warmer and any scheduled renders."""
        self._stopping = True
        self._wake.set()
        if self._warmer is not None:
            self._warmer.kill(block=True, timeout=timeout)
        self._jobs.kill(block=True, timeout=timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until scheduled renders (from misses) are done; False on timeout."""
        return bool(self._jobs.join(timeout=timeout))

    def update(self, *, settings: GreetingSettings | None = None, tts: TextToSpeech | None = None) -> None:
        """Swap greeting settings or the TTS voice; the warmer re-renders what changed."""
        if settings is not None:
            self.settings = settings
        if tts is not None:
            self.tts = tts
        self._wake.set()

    # ------------------------------------------------------------------------------ internals

    def _watch(self) -> None:
        last = self._signature()
        if self.settings.warm_on_start:
            self._safe_warm()
        while not self._stopping:
            self._wake.wait(timeout=max(self.settings.watch_interval, 0.01))
            self._wake.clear()
            if self._stopping:
                break
            self._reload_config()
            current = self._signature()
            if current != last or self._retry_due():
                last = current
                self._safe_warm()

    def _safe_warm(self) -> None:
        try:
            self.warm()
        except Exception:  # the warmer must outlive a broken contacts file or a full disk
            log.exception("greeting warm failed")
            self._note_failures(["*"])

    def _signature(self) -> tuple[str, ...]:
        try:
            version = self.contacts.version()
        except Exception:
            log.exception("contacts version failed")
            version = "?"
        s = self.settings
        return (version, self.tts.name, self.tts.voice, s.generic_text, s.known_text, s.cache_dir)

    def _reload_config(self) -> None:
        if self._config_path is None or self._load_settings is None:
            return
        mtime = self._mtime(self._config_path)
        if mtime == self._config_mtime:
            return
        self._config_mtime = mtime
        try:
            self.settings = self._load_settings()
        except (ConfigError, OSError) as exc:
            log.warning("config reload failed, greetings keep the old texts: %s", exc)

    def _default_loader(self) -> GreetingSettings:
        from esl_agent import config

        assert self._config_path is not None
        return config.load(self._config_path).greetings

    @staticmethod
    def _mtime(path: Path | None) -> int | None:
        if path is None:
            return None
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return None

    def _schedule(self, choice: GreetingChoice) -> gevent.Greenlet | None:
        claim = self._claim(choice.key)
        if claim is None:
            return None  # already being rendered
        return self._jobs.spawn(self._render_claimed, choice.key, choice.text, self.tts, claim)

    def _claim(self, key: str) -> gevent.event.Event | None:
        """Reserve a key for rendering; None if someone else holds it (greenlets: no race)."""
        if key in self._inflight:
            return None
        claim = gevent.event.Event()
        self._inflight[key] = claim
        return claim

    def _render(self, key: str, text: str, tts: TextToSpeech) -> bool:
        """Render one key unless another warm or miss is already doing it (then wait for it)."""
        claim = self._claim(key)
        if claim is None:
            self._inflight[key].wait()
            return False
        return self._render_claimed(key, text, tts, claim)

    def _render_claimed(self, key: str, text: str, tts: TextToSpeech, claim: gevent.event.Event) -> bool:
        try:
            path = self.path_for(key)
            if path.exists():
                return False
            pcm = b"".join(tts.synthesize(for_speech(text, self.language), NoTurn()))
            if not pcm:
                raise ProviderError(f"{tts.name}: no audio for greeting")
            if len(pcm) % 2:
                pcm = pcm[:-1]
            write_wav(path, resample(pcm, tts.sample_rate, GREETING_RATE), GREETING_RATE)
            return True
        except Exception as exc:
            log.warning("greeting render failed", extra={"key": key, "err": f"{type(exc).__name__}: {exc}"})
            return False
        finally:
            if self._inflight.get(key) is claim:
                del self._inflight[key]
            claim.set()

    def _remove_unwanted(self, wanted: set[str]) -> list[str]:
        removed: list[str] = []
        try:
            entries = list(os.scandir(self.cache_dir))
        except FileNotFoundError:
            return removed
        for entry in entries:
            name = entry.name
            if _FILE.fullmatch(name):
                key = name[: -len(".wav")]
                if key in wanted or key in self._inflight:
                    continue
            elif _TMP.fullmatch(name):
                try:
                    if time.time() - entry.stat().st_mtime < 60:
                        continue  # a render in progress (here or in another process)
                except FileNotFoundError:
                    continue
                key = name
            else:
                continue  # not ours: leave it alone
            try:
                os.unlink(entry.path)
                removed.append(key)
            except FileNotFoundError:
                pass
        return removed

    def _note_failures(self, failed: list[str]) -> None:
        if not failed:
            self._failures.clear()
            self._backoff = 0.0
            return
        self._failures = set(failed)
        self._backoff = min(_MAX_BACKOFF, max(self.settings.watch_interval, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff

    def _retry_due(self) -> bool:
        return bool(self._failures) and time.monotonic() >= self._retry_at


def _safe_id(cid: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cid) and not cid.startswith("."):
        return cid
    return _slug(cid) + "-" + hashlib.sha256(cid.encode("utf-8")).hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")[:80] or "x"

