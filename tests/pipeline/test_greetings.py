"""Greeting cache: keys, lookups without TTS, selective re-rendering, misses, the warmer."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import wave
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.event
import gevent.queue
import numpy as np
import pytest

from esl_agent.agent.contacts import YamlContactStore
from esl_agent.config import GreetingSettings
from esl_agent.errors import ProviderError
from esl_agent.pipeline.greetings import GreetingCache, WarmReport
from esl_agent.providers.base import TextToSpeech, TurnToken

CONTACTS = """
contacts:
  - name: Markus
    numbers: ["0664 1234567"]
  - name: Anna Berger
    numbers: ["+43 1 234 56 78"]
    greeting: "Hello Anna, welcome back!"
  - name: Support Desk
    transfer: "300"
"""


class FakeTts:
    """In-process TextToSpeech: 0.1 s of a tone per word at 16 kHz; counts every request."""

    name = "fake"
    sample_rate = 16000

    def __init__(self, voice: str = "v1") -> None:
        self.voice = voice
        self.calls: list[str] = []
        self.fail = False
        self.gate: gevent.event.Event | None = None

    def synthesize(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        self.calls.append(text)
        if self.gate is not None:
            self.gate.wait()
        if self.fail:
            raise ProviderError("fake: synthesis failed")
        samples = (np.arange(1600 * len(text.split())) % 80 * 100).astype("<i2").tobytes()
        for i in range(0, len(samples), 3200):
            yield samples[i : i + 3200]


@pytest.fixture
def contacts_file(tmp_path: Path) -> Path:
    p = tmp_path / "contacts.yaml"
    p.write_text(CONTACTS, encoding="utf-8")
    return p


@pytest.fixture
def setup(tmp_path: Path, contacts_file: Path):  # type: ignore[no-untyped-def]
    settings = GreetingSettings(cache_dir=str(tmp_path / "greetings"), watch_interval=0.02)
    tts = FakeTts()
    assert isinstance(tts, TextToSpeech)
    cache = GreetingCache(settings, tts, YamlContactStore(contacts_file))
    yield cache, tts
    cache.stop()


def files(cache: GreetingCache) -> dict[str, int]:
    return {p.stem: p.stat().st_ino for p in Path(cache.settings.cache_dir).glob("*.wav")}


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))


def test_warm_renders_keyed_8khz_files(setup) -> None:  # type: ignore[no-untyped-def]
    cache, tts = setup
    report = cache.warm()
    assert len(report.rendered) == 3 and report.failed == []
    markus_text = "Hello Markus, good to hear from you. How can I help?"
    digest = hashlib.sha256(markus_text.encode()).hexdigest()[:16]
    assert f"contact-markus__fake-v1__{digest}" in report.rendered
    assert set(files(cache)) == set(report.rendered)
    assert any(k.startswith("generic__fake-v1__") for k in report.rendered)
    assert sorted(tts.calls) == sorted(
        [markus_text, "Hello Anna, welcome back!", GreetingSettings().generic_text]
    )
    with wave.open(str(cache.path_for(f"contact-markus__fake-v1__{digest}"))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == pytest.approx(800 * len(markus_text.split()), abs=2)
    again = cache.warm()
    assert again.rendered == [] and again.present == 3 and len(tts.calls) == 3


def test_lookup_hits_without_tts(setup) -> None:  # type: ignore[no-untyped-def]
    cache, tts = setup
    cache.warm()
    tts.calls.clear()
    markus = cache.lookup("+43 664 123 45 67")
    anna = cache.lookup("012345678")
    unknown = cache.lookup("+49 30 1234567")
    withheld = cache.lookup(None)
    assert markus is not None and markus.name.startswith("contact-markus__")
    assert anna is not None and anna.name.startswith("contact-anna-berger__")
    assert unknown is not None and unknown.name.startswith("generic__")
    assert withheld == unknown
    assert cache.wait_idle(timeout=5)
    assert tts.calls == []
    assert cache.choose("06641234567").text.startswith("Hello Markus")
    assert "name" in cache.choose("+4930999").text


def test_rename_contact_rerenders_only_that_file(setup, contacts_file: Path) -> None:  # type: ignore[no-untyped-def]
    cache, tts = setup
    cache.warm()
    before = files(cache)
    tts.calls.clear()
    _edit(contacts_file, "name: Markus", "name: Marko")
    report = cache.warm()
    assert tts.calls == ["Hello Marko, good to hear from you. How can I help?"]
    assert len(report.rendered) == 1 and report.rendered[0].startswith("contact-marko__")
    assert len(report.removed) == 1 and report.removed[0].startswith("contact-markus__")
    after = files(cache)
    for key, ino in before.items():
        if not key.startswith("contact-markus__"):
            assert after[key] == ino  # untouched


def test_voice_change_rerenders_everything(setup) -> None:  # type: ignore[no-untyped-def]
    cache, _ = setup
    cache.warm()
    old = set(files(cache))
    v2 = FakeTts(voice="v2")
    cache.update(tts=v2)
    report = cache.warm()
    assert len(v2.calls) == 3 and len(report.rendered) == 3
    assert set(report.removed) == old
    assert all("__fake-v2__" in k for k in files(cache))


def test_known_text_change_rerenders_only_affected(setup) -> None:  # type: ignore[no-untyped-def]
    cache, tts = setup
    cache.warm()
    tts.calls.clear()
    cache.update(settings=dataclasses.replace(cache.settings, known_text="Hi {name}!"))
    report = cache.warm()
    assert tts.calls == ["Hi Markus!"]  # Anna has her own greeting, generic is unchanged
    assert len(report.rendered) == 1 and len(report.removed) == 1


def test_miss_returns_none_and_schedules_one_render(setup) -> None:  # type: ignore[no-untyped-def]
    cache, tts = setup
    assert cache.lookup("0664 1234567") is None
    assert cache.lookup("0664 1234567") is None  # still rendering: not scheduled again
    assert cache.miss("0664 1234567") is None
    assert cache.wait_idle(timeout=5)
    assert tts.calls == ["Hello Markus, good to hear from you. How can I help?"]
    path = cache.lookup("0664 1234567")
    assert path is not None and path.exists()
    assert cache.miss("0664 1234567") is None  # already there
    assert len(tts.calls) == 1


def test_concurrent_warms_render_each_key_once(setup) -> None:  # type: ignore[no-untyped-def]
    cache, tts = setup
    tts.gate = gevent.event.Event()
    jobs = [gevent.spawn(cache.warm), gevent.spawn(cache.warm)]
    gevent.sleep(0)  # let the first warm start its first render
    cache.miss("0664 1234567")
    cache.miss(None)
    tts.gate.set()
    gevent.joinall(jobs, timeout=5, raise_error=True)
    assert cache.wait_idle(timeout=5)
    assert sorted(tts.calls) == sorted(set(tts.calls)) and len(tts.calls) == 3
    assert len(files(cache)) == 3


def test_tts_failure_is_reported_not_raised(setup) -> None:  # type: ignore[no-untyped-def]
    cache, tts = setup
    tts.fail = True
    report = cache.warm()
    assert len(report.failed) == 3 and report.rendered == []
    assert files(cache) == {}
    assert cache.lookup("0664 1234567") is None
    assert cache.wait_idle(timeout=5)
    tts.fail = False
    assert len(cache.warm().rendered) == 3


def test_foreign_files_are_left_alone(setup) -> None:  # type: ignore[no-untyped-def]
    cache, _ = setup
    Path(cache.settings.cache_dir).mkdir(parents=True)
    foreign = Path(cache.settings.cache_dir) / "music-on-hold.wav"
    foreign.write_bytes(b"RIFF")
    stale = Path(cache.settings.cache_dir) / "contact-gone__fake-v1__0123456789abcdef.wav"
    stale.write_bytes(b"RIFF")
    report = cache.warm()
    assert foreign.exists() and not stale.exists()
    assert report.removed == ["contact-gone__fake-v1__0123456789abcdef"]


def test_warmer_picks_up_contacts_edit(tmp_path: Path, contacts_file: Path) -> None:
    reports: gevent.queue.Queue[WarmReport] = gevent.queue.Queue()
    tts = FakeTts()
    settings = GreetingSettings(cache_dir=str(tmp_path / "g"), watch_interval=0.02)
    cache = GreetingCache(settings, tts, YamlContactStore(contacts_file), on_warmed=reports.put)
    cache.start_warmer()
    try:
        first = reports.get(timeout=5)  # warm_on_start
        assert len(first.rendered) == 3
        _edit(contacts_file, "name: Markus", "name: Markus Huber")
        second = reports.get(timeout=5)
        assert [k.split("__")[0] for k in second.rendered] == ["contact-markus-huber"]
        assert cache.lookup("0664 1234567") == cache.path_for(second.rendered[0])
    finally:
        cache.stop()


def test_warmer_picks_up_config_text_edit(tmp_path: Path, contacts_file: Path) -> None:
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(
        f"greetings:\n  cache_dir: {tmp_path / 'g'}\n  watch_interval: 0.02\n"
        "  generic_text: Hello, who is calling?\n",
        encoding="utf-8",
    )
    reports: gevent.queue.Queue[WarmReport] = gevent.queue.Queue()
    tts = FakeTts()
    settings = GreetingSettings(
        cache_dir=str(tmp_path / "g"), watch_interval=0.02, generic_text="Hello, who is calling?"
    )
    cache = GreetingCache(
        settings, tts, YamlContactStore(contacts_file), config_path=config_file, on_warmed=reports.put
    )
    cache.start_warmer()
    try:
        reports.get(timeout=5)
        _edit(config_file, "who is calling?", "may I have your name?")
        second = reports.get(timeout=5)
        assert len(second.rendered) == 1 and second.rendered[0].startswith("generic__")
        assert tts.calls[-1] == "Hello, may I have your name?"
    finally:
        cache.stop()
