"""Constants shared by the orchestrator, the controller process and the load process."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

OPTIMISED_DID = "+43720100000"  # sentence streaming on, greeting cache on
BASELINE_DID = "+43720100001"  # the seed's baseline: whole-reply TTS, live TTS greeting

GENERIC_GREETING = "Hello, front desk, how can I help?"
KNOWN_GREETING = "Hello {name}, how can I help?"
CALLER_TEXT = "Could you please tell me more about that"  # every scripted caller utterance
BARGE_TEXT = CALLER_TEXT

_FIRST = ["Anna", "Bruno", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas",
          "Karla", "Lukas", "Maria", "Nora", "Oskar", "Paula", "Quirin", "Rosa", "Simon", "Tina",
          "Ulla", "Viktor", "Wanda", "Xaver", "Yvonne", "Zeno"]
_LAST = ["Berger", "Huber", "Wagner", "Pichler", "Steiner", "Moser", "Mayer", "Hofer", "Leitner",
         "Gruber", "Fuchs", "Eder", "Koller", "Lang", "Baumann", "Winkler", "Weber", "Schwarz",
         "Maier", "Wolf", "Brunner", "Lehner", "Haas", "Schmid", "Wallner", "Auer"]


def contact_name(index: int) -> str:
    """A unique, speakable name per simulated caller (no digits: TTS text stays as written)."""
    return f"{_FIRST[index % 26]} {_LAST[(index // 26) % 26]}{'' if index < 676 else ' ' + _FIRST[index // 676 % 26]}"


def contact_number(index: int) -> str:
    return f"+43664{index:07d}"


def reply_texts(name: str) -> list[str]:
    """What the loopback model answers on the 1st, 2nd and later user turns of a call."""
    first = (f"Sure {name}, we are open from nine to five on weekdays. "
             "On Saturdays we open at ten in the morning. Is there anything else I can do for you?")
    long = (f"Let me explain our services in some detail, {name}. "  # every sentence names the
             f"We offer consulting for small businesses in the region, {name}. "  # caller: the TTS
             f"Our team also handles payroll questions for you, {name}. "  # server can tell whose
             f"In addition we run practical workshops every month, {name}. "  # sentence it synthesises
             f"Many of them are held in the evening after work, {name}. "
             f"You can book a seat on our website or by phone, {name}. "
             f"We also offer a free first meeting to look at your situation, {name}.")
    short = f"Of course {name}, go ahead and tell me what you need."
    return [first, long, short]


def send(obj: Any) -> None:
    """One JSON line on stdout (the child processes' answer channel)."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def stdin_lines() -> Iterator[bytes]:
    """Command lines from stdin, read cooperatively without relying on O_NONBLOCK.

    A fork in the process (the OpenAI SDK runs `uname -p` through subprocess on its first
    request) can leave the shared stdin pipe blocking, and a gevent FileObject would then block
    the whole hub in read(); waiting for readability first keeps the read from ever blocking.
    """
    from gevent.socket import wait_read

    fd = sys.stdin.fileno()
    buf = b""
    while True:
        while b"\n" not in buf:
            wait_read(fd)
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        yield line
