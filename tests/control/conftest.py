"""A controller on loopback ports and the FreeSWITCH simulator pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from esl_agent import config
from esl_agent.app import Controller
from esl_agent.media.wavfile import write_wav
from esl_agent.sim.freeswitch import FreeSwitchSimulator


def tone_pcm(freq: float, ms: int, rate: int = 8000, amplitude: int = 6000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype("<i2").tobytes()


class ToneHandler:
    """A minimal call handler: greeting file at start, one tone reply after caller audio."""

    instances: list[ToneHandler] = []

    def __init__(self, call, greeting: str, reply_freq: float) -> None:
        self.call = call
        self.greeting = greeting
        self.reply_freq = reply_freq
        self.bytes_in = 0
        self.replied = False
        self.closes = 0
        self.digits: list[str] = []
        ToneHandler.instances.append(self)

    def start(self) -> None:
        self.call.set_state("greeting")
        result = self.call.play_file(self.greeting)
        assert result.ok, result.reply

    def on_caller_audio(self, pcm: bytes) -> None:
        self.bytes_in += len(pcm)
        if not self.replied and self.bytes_in >= 8000:  # half a second heard
            self.replied = True
            self.call.set_state("speaking", turn="1")
            self.call.send_audio(tone_pcm(self.reply_freq, 400), 1)
            self.call.flush_audio(1)

    def on_dtmf(self, digit: str) -> None:
        self.digits.append(digit)

    def close(self) -> None:
        self.closes += 1


@pytest.fixture()
def greeting_wav(tmp_path: Path) -> str:
    path = tmp_path / "greeting.wav"
    write_wav(path, tone_pcm(440, 300), 8000)
    return str(path)


@pytest.fixture()
def apology_wav(tmp_path: Path) -> str:
    path = tmp_path / "apology.wav"
    write_wav(path, tone_pcm(300, 200), 8000)
    return str(path)


def make_settings(tmp_path: Path, **sections) -> config.Settings:
    data = {
        "server": {"esl_listen": "127.0.0.1:0", "fork_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0",
                   "command_timeout": 3.0},
        "fork": {"connect_timeout": 2.0},
        "calls": {"audio_dir": str(tmp_path / "audio")},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config.from_mapping(data, env={})


@pytest.fixture()
def controller_factory(tmp_path: Path, apology_wav: str) -> Iterator[Callable[..., Controller]]:
    made: list[Controller] = []
    ToneHandler.instances = []

    def make(handler_factory, controller_options: dict | None = None, **sections) -> Controller:
        c = Controller(make_settings(tmp_path, **sections), handler_factory, apology_file=apology_wav,
                       **(controller_options or {}))
        c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown(drain_seconds=2)


@pytest.fixture()
def sim_factory() -> Iterator[Callable[..., FreeSwitchSimulator]]:
    made: list[FreeSwitchSimulator] = []

    def make(controller: Controller, **kw) -> FreeSwitchSimulator:
        s = FreeSwitchSimulator(("127.0.0.1", controller.esl_port), **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.shutdown()
