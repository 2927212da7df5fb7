"""Pure builders for the FreeSWITCH API strings the controller sends.

FreeSWITCH splits API arguments on spaces, strips single quotes and honours backslashes
(PROTOCOLS.md 2.3), so every value that ends up in a command is checked here, before any
command string exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from esl_agent.errors import CommandError

_UUID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_+*#.:@/=-]{1,200}$")
_VAR_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_CAUSE = re.compile(r"^[A-Z_]{3,40}$")
_UNSAFE_VALUE = re.compile(r"[\r\n'\\;]")

# Event subscription for a controlled call (PROTOCOLS.md 1.5): myevents does not include these.
EVENT_SUBSCRIPTION = (
    "event plain PLAYBACK_START PLAYBACK_STOP CHANNEL_CALLSTATE BACKGROUND_JOB DTMF "
    "CUSTOM mod_audio_fork::connect mod_audio_fork::connect_failed mod_audio_fork::disconnect "
    "mod_audio_fork::play_audio mod_audio_fork::kill_audio mod_audio_fork::error "
    "mod_audio_fork::buffer_overrun mod_audio_fork::transcription mod_audio_fork::json"
)


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise CommandError(what, f"-ERR refused unsafe {what}: {value[:40]!r}")
    return value


def fork_metadata(call_uuid: str, **extra: Any) -> str:
    """Compact JSON metadata for the fork: no spaces (the module splits on them), no quotes/backslashes."""
    text = json.dumps({"uuid": call_uuid, **extra}, separators=(",", ":"), ensure_ascii=True)
    if " " in text or "'" in text or "\\" in text:
        raise CommandError("uuid_audio_fork", "-ERR metadata must not contain spaces, quotes or backslashes")
    return text


def audio_fork_start(
    call_uuid: str,
    url: str,
    *,
    sample_rate: int = 8000,
    bugname: str = "esl_agent",
    metadata: str = "",
    mode: Literal["stream", "play_audio"] = "stream",
) -> str:
    """`uuid_audio_fork <uuid> start <url> mono <rate> <bugname> <metadata> [true true <rate>]`.

    The rate is always given (a missing rate may crash the module, PROTOCOLS.md 3.1). In stream mode
    all ten tokens of the jambonz module are written (fixtures README fact 17).
    """
    _check(_UUID, call_uuid, "uuid")
    if not url.startswith(("ws://", "wss://")) or " " in url or "'" in url:
        raise CommandError("uuid_audio_fork", f"-ERR bad fork url {url[:60]!r}")
    _check(_TOKEN, bugname, "bugname")
    rate = {8000: "8k", 16000: "16k"}.get(sample_rate, str(sample_rate))
    meta = metadata or "''"
    if metadata and (" " in metadata or not metadata.startswith(("{", "["))):
        raise CommandError("uuid_audio_fork", "-ERR metadata must be compact JSON")
    cmd = f"uuid_audio_fork {call_uuid} start {url} mono {rate} {bugname} {meta}"
    if mode == "stream":
        cmd += f" true true {sample_rate}"
    return cmd


def audio_fork_stop(call_uuid: str, bugname: str = "esl_agent") -> str:
    return f"uuid_audio_fork {_check(_UUID, call_uuid, 'uuid')} stop {_check(_TOKEN, bugname, 'bugname')}"


def uuid_break(call_uuid: str, all_queued: bool = True) -> str:
    """Stop the current playback; with all_queued also flush queued sendmsg apps (fact 13)."""
    return f"uuid_break {_check(_UUID, call_uuid, 'uuid')}" + (" all" if all_queued else "")


def uuid_transfer(call_uuid: str, destination: str, dialplan: str = "XML", context: str = "default") -> str:
    """`uuid_transfer <uuid> <dest> <dialplan> <context>`; the destination must be one safe token."""
    _check(_UUID, call_uuid, "uuid")
    _check(_TOKEN, destination, "destination")
    if "@" in destination or "/" in destination:
        raise CommandError("uuid_transfer", f"-ERR refused unsafe destination: {destination[:40]!r}")
    _check(re.compile(r"^[A-Za-z0-9_]{1,40}$"), dialplan, "dialplan")
    _check(re.compile(r"^[A-Za-z0-9_.-]{1,60}$"), context, "context")
    return f"uuid_transfer {call_uuid} {destination} {dialplan} {context}"


def uuid_setvar_multi(call_uuid: str, variables: Mapping[str, str]) -> str:
    """Set several channel variables in one command (values must not contain ; ' \\ or newlines)."""
    _check(_UUID, call_uuid, "uuid")
    parts = []
    for name, value in variables.items():
        _check(_VAR_NAME, name, "variable name")
        value = _UNSAFE_VALUE.sub(" ", str(value))[:200]
        parts.append(f"{name}={value}")
    return f"uuid_setvar_multi {call_uuid} {';'.join(parts)}"


def hangup_cause(cause: str) -> str:
    return _check(_CAUSE, cause, "hangup cause")


def play_audio_message(pcm: bytes, sample_rate: int, **extra: Any) -> str:
    """The fork's `playAudio` JSON for raw L16 audio (drachtio mode; PROTOCOLS.md 3.3)."""
    import base64

    data = {"audioContentType": "raw", "sampleRate": sample_rate,
            "audioContent": base64.b64encode(pcm).decode("ascii"), **extra}
    return json.dumps({"type": "playAudio", "data": data}, separators=(",", ":"))


KILL_AUDIO_MESSAGE = '{"type":"killAudio"}'
