"""YAML configuration loaded into frozen, typed settings.

Every section is a frozen dataclass with documented defaults (see conf/agent.example.yaml).
`load(path)` validates the whole file: an unknown key, a wrong type, a bad address or a secret
whose environment variable is missing raises one `ConfigError` naming the file and the key path.
Secrets never appear in YAML: a key ending in `_env` names the environment variable that holds it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from esl_agent.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class ServerSettings:
    """Where the controller listens."""

    esl_listen: str = "127.0.0.1:8084"  # outbound event socket (dialplan `socket` target)
    fork_listen: str = "127.0.0.1:8090"  # WebSocket endpoint for mod_audio_fork
    fork_url: str = "ws://127.0.0.1:8090"  # the URL FreeSWITCH connects to (path /fork/<uuid>)
    http_listen: str = "127.0.0.1:9090"  # /healthz and /metrics
    max_calls: int = 500
    drain_seconds: float = 30.0  # graceful shutdown: let calls finish this long
    command_timeout: float = 5.0  # deadline for every ESL command reply


@dataclass(frozen=True)
class ForkSettings:
    """How call audio leaves and returns to FreeSWITCH."""

    mode: Literal["stream", "play_audio"] = "stream"  # stream = jambonz bidirectional
    sample_rate: int = 8000
    bugname: str = "esl_agent"
    connect_timeout: float = 3.0  # fork WebSocket must connect within this after start
    caller_silence_timeout: float = 30.0  # no caller audio frames at all for this long -> fallback


@dataclass(frozen=True)
class CallSettings:
    """Per-call behaviour and fallbacks."""

    audio_dir: str = "var/audio"  # prepared audio (apology, fillers) and per-call temp files
    apology_text: str = "Sorry, something went wrong on our side."
    fallback_extension: str = ""  # transfer here after an apology; empty = hang up
    fallback_dialplan: str = "XML"
    fallback_context: str = "default"
    max_call_seconds: float = 1800.0
    publish_state: bool = True  # channel variables + CUSTOM esl_agent::state events


@dataclass(frozen=True)
class GoogleSttSettings:
    endpoint: str = ""  # host:port; empty = speech.googleapis.com with default credentials
    insecure: bool = False  # plaintext gRPC (loopback test servers only)
    model: str = "phone_call"
    use_enhanced: bool = True
    credentials_env: str = ""  # env var with a service-account JSON path; empty = ADC
    stream_restart_seconds: float = 270.0  # restart before Google's ~305 s stream limit


@dataclass(frozen=True)
class OfflineSttSettings:
    beam_size: int = 5
    cpu_threads: int = 2
    hotwords: str = ""
    vad_silence_ms: int = 500  # silence that closes an utterance before Whisper runs
    vad_threshold: float = 500.0  # RMS of a 20 ms frame that counts as speech
    interim_every_ms: int = 700  # interim transcript (beam 1) per this much voiced audio; 0 = off


@dataclass(frozen=True)
class SttSettings:
    provider: Literal["google", "offline"] = "offline"
    language: str = "en-US"
    google: GoogleSttSettings = field(default_factory=GoogleSttSettings)
    offline: OfflineSttSettings = field(default_factory=OfflineSttSettings)


@dataclass(frozen=True)
class HttpLlmSettings:
    """One HTTP LLM provider (Groq, Anthropic or OpenAI-compatible)."""

    model: str = ""
    base_url: str = ""  # empty = the vendor's default
    api_key_env: str = ""  # env var holding the key; empty = no key (local servers)
    max_tokens: int = 300
    temperature: float = 0.4


@dataclass(frozen=True)
class ScriptedLlmSettings:
    script: str = ""  # YAML file of intents; empty = the embedded default script


@dataclass(frozen=True)
class LlmSettings:
    chain: list[str] = field(default_factory=lambda: ["scripted"])  # failover order
    first_token_timeout: float = 1.5  # move to the next provider if no token by then
    turn_timeout: float = 20.0
    groq: HttpLlmSettings = field(
        default_factory=lambda: HttpLlmSettings(model="llama-3.3-70b-versatile", api_key_env="GROQ_API_KEY")
    )
    anthropic: HttpLlmSettings = field(
        default_factory=lambda: HttpLlmSettings(model="claude-haiku-4-5", api_key_env="ANTHROPIC_API_KEY")
    )
    openai: HttpLlmSettings = field(
        default_factory=lambda: HttpLlmSettings(model="llama3.1", base_url="http://127.0.0.1:11434/v1")
    )
    scripted: ScriptedLlmSettings = field(default_factory=ScriptedLlmSettings)


@dataclass(frozen=True)
class GoogleTtsSettings:
    endpoint: str = ""
    insecure: bool = False
    voice: str = "en-US-Chirp3-HD-Kore"
    language: str = "en-US"
    speaking_rate: float = 1.0
    streaming: bool = True  # use StreamingSynthesize where the voice supports it
    credentials_env: str = ""


@dataclass(frozen=True)
class OfflineTtsSettings:
    engine: Literal["piper", "espeak"] = "piper"
    espeak_voice: str = "en-us"


@dataclass(frozen=True)
class TtsSettings:
    provider: Literal["google", "offline", "tone"] = "offline"
    google: GoogleTtsSettings = field(default_factory=GoogleTtsSettings)
    offline: OfflineTtsSettings = field(default_factory=OfflineTtsSettings)


@dataclass(frozen=True)
class PipelineSettings:
    """Turn taking, barge-in and sentence streaming."""

    sentence_streaming: bool = True  # False = synthesise the whole reply (baseline)
    bargein_min_words: int = 2
    backchannels: list[str] = field(
        default_factory=lambda: ["mhm", "mm", "uh-huh", "yeah", "yes", "ok", "okay", "right", "ja", "genau"]
    )
    false_interruption_ms: int = 800  # no words within this after a pause -> resume the reply
    end_of_turn_ms: int = 300  # silence after a final transcript before replying
    end_of_turn_digits_ms: int = 1200  # ... when the caller was dictating digits or an address
    filler_after_ms: int = 900  # no first LLM token by then -> play the filler
    filler_text: str = "One moment, please."
    dtmf_transfer_key: str = "0"
    dtmf_transfer_contact: str = ""  # contact the transfer key goes to; empty = the LLM decides
    max_clause_chars: int = 120  # cut a long clause at a comma after this many characters


@dataclass(frozen=True)
class GreetingSettings:
    cache_dir: str = "var/greetings"
    generic_text: str = "Hello, you have reached the front desk. May I have your name, please?"
    known_text: str = "Hello {name}, good to hear from you. How can I help?"
    warm_on_start: bool = True
    watch_interval: float = 2.0  # seconds between checks of contacts/config for changes


@dataclass(frozen=True)
class ContactSettings:
    path: str = "conf/contacts.yaml"  # .yaml or .sqlite
    default_region: str = "AT"  # for numbers in national format


@dataclass(frozen=True)
class AgentSettings:
    name: str = "Ava"
    company: str = "Example Ltd"
    language: str = "en-US"
    system_prompt: str = ""  # empty = the built-in receptionist prompt
    transfer_dialplan: str = "XML"
    transfer_context: str = "default"  # internal extensions (a contact's transfer target)
    outbound_context: str = "esl_agent_outbound"  # E.164 numbers: the rendered, policy-checked context


@dataclass(frozen=True)
class PolicySettings:
    path: str = "conf/policy.yaml"
    audit_log: str = "var/audit.log"
    tokens_env: str = ""  # env var with per-client API tokens (client:secret,...); empty = no API
    esl_inbound: str = "127.0.0.1:8021"  # FreeSWITCH's inbound event socket, used to originate
    esl_password_env: str = ""  # env var with its password; empty = outbound initiation disabled
    caller_id: str = ""  # origination caller ID (one of our DIDs)


@dataclass(frozen=True)
class OpsSettings:
    log_level: str = "INFO"
    cost_per_minute: dict[str, float] = field(default_factory=dict)  # e.g. {stt: 0.016, tts: 0.004}
    call_records: str = "var/calls.sqlite"  # one row per call: latency, usage, transcript, cost


@dataclass(frozen=True)
class Settings:
    """The whole configuration."""

    server: ServerSettings = field(default_factory=ServerSettings)
    fork: ForkSettings = field(default_factory=ForkSettings)
    calls: CallSettings = field(default_factory=CallSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    greetings: GreetingSettings = field(default_factory=GreetingSettings)
    contacts: ContactSettings = field(default_factory=ContactSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    source: str = field(default="<defaults>", metadata={"internal": True})


# --------------------------------------------------------------------------------------------
# Loading


def load(path: str | os.PathLike[str], env: typing.Mapping[str, str] | None = None) -> Settings:
    """Load and validate a YAML config file; raise ConfigError naming the file and key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return from_mapping(data or {}, source=str(p), env=env)


def from_mapping(
    data: Any, source: str = "<dict>", env: typing.Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from an already parsed mapping (tests, overrides)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    settings = _build(Settings, data, source, "")
    settings = dataclasses.replace(settings, source=source)
    _validate(settings, source, os.environ if env is None else env)
    return settings


def secret(env_name: str, env: typing.Mapping[str, str] | None = None) -> str:
    """Read a secret from the environment by the name the config gave; '' if unnamed."""
    if not env_name:
        return ""
    return (os.environ if env is None else env).get(env_name, "")


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or '<top>'}: expected a mapping, got {_tname(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            near = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: {path}: unknown key (allowed here: {near})")
        kwargs[key] = _coerce(hints[key], value, source, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, source, path + ".")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{source}: {path}: must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, source, path)
    if origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {path}: expected a list, got {_tname(value)}")
        return [_coerce(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        ktype, vtype = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {path}: expected a mapping, got {_tname(value)}")
        return {_coerce(ktype, k, source, path): _coerce(vtype, v, source, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {path}: expected true or false, got {_tname(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {path}: expected an integer, got {_tname(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {path}: expected a number, got {_tname(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {path}: expected a string, got {_tname(value)}")
        return value
    return value


def _tname(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def parse_hostport(value: str, source: str, path: str) -> tuple[str, int]:
    """Split 'host:port' and check both parts; raise ConfigError naming the key."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{source}: {path}: expected host:port, got {value!r}")
    host = host.strip("[]")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{source}: {path}: {host!r} is not an IP address") from None
    return host, int(port_text)


def _validate(s: Settings, source: str, env: typing.Mapping[str, str]) -> None:
    parse_hostport(s.server.esl_listen, source, "server.esl_listen")
    parse_hostport(s.server.fork_listen, source, "server.fork_listen")
    parse_hostport(s.server.http_listen, source, "server.http_listen")
    if not s.server.fork_url.startswith(("ws://", "wss://")):
        raise ConfigError(f"{source}: server.fork_url: must start with ws:// or wss://, got {s.server.fork_url!r}")
    if " " in s.fork.bugname or not s.fork.bugname:
        raise ConfigError(f"{source}: fork.bugname: must be one word without spaces")
    if s.fork.sample_rate not in (8000, 16000):
        raise ConfigError(f"{source}: fork.sample_rate: must be 8000 or 16000, got {s.fork.sample_rate}")
    if s.server.max_calls < 1:
        raise ConfigError(f"{source}: server.max_calls: must be at least 1")
    known = {"groq", "anthropic", "openai", "scripted"}
    if not s.llm.chain:
        raise ConfigError(f"{source}: llm.chain: must name at least one provider")
    for i, name in enumerate(s.llm.chain):
        if name not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(f"{source}: llm.chain[{i}]: unknown provider {name!r} (known: {names})")
        if name != "scripted":
            llm: HttpLlmSettings = getattr(s.llm, name)
            _need_secret(llm.api_key_env, env, source, f"llm.{name}.api_key_env")
    if s.stt.provider == "google":
        _need_secret(s.stt.google.credentials_env, env, source, "stt.google.credentials_env")
    if s.tts.provider == "google":
        _need_secret(s.tts.google.credentials_env, env, source, "tts.google.credentials_env")
    _need_secret(s.policy.tokens_env, env, source, "policy.tokens_env")
    _need_secret(s.policy.esl_password_env, env, source, "policy.esl_password_env")
    parse_hostport(s.policy.esl_inbound, source, "policy.esl_inbound")


def _need_secret(env_name: str, env: typing.Mapping[str, str], source: str, path: str) -> None:
    if env_name and not env.get(env_name):
        raise ConfigError(f"{source}: {path}: environment variable {env_name} is not set")
