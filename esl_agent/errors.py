"""The exception tree of esl-agent.

    EslAgentError
    ├── ConfigError            invalid YAML, unknown key, wrong type, missing secret (exit code 2)
    ├── ProtocolError          malformed event-socket or WebSocket input
    ├── CommandError           FreeSWITCH answered a command with -ERR / -USAGE, or it timed out
    ├── CallGone               the call hung up or the socket closed while we waited
    ├── ProviderError          an STT, LLM or TTS provider failed (timeout, HTTP error, bad stream)
    │   └── ProviderTimeout
    └── PolicyDenied           the dial policy refused a number
"""

from __future__ import annotations


class EslAgentError(Exception):
    """Base of every error esl-agent raises on purpose."""


class ConfigError(EslAgentError):
    """The configuration is invalid; the message names the file and the key."""


class ProtocolError(EslAgentError):
    """Input on a wire (event socket, WebSocket) does not follow the protocol."""


class CommandError(EslAgentError):
    """FreeSWITCH refused a command; `reply` holds the -ERR text."""

    def __init__(self, command: str, reply: str) -> None:
        super().__init__(f"{command}: {reply}")
        self.command = command
        self.reply = reply


class CallGone(EslAgentError):
    """The call is over (hangup or socket closed) and cannot take commands."""


class ProviderError(EslAgentError):
    """A speech or language provider failed."""


class ProviderTimeout(ProviderError):
    """A provider did not answer within its deadline."""


class PolicyDenied(EslAgentError):
    """The dial policy refused a destination; `rule` says which rule decided."""

    def __init__(self, number: str, rule: str, spoken: str = "") -> None:
        super().__init__(f"{number}: denied by {rule}")
        self.number = number
        self.rule = rule
        self.spoken = spoken
