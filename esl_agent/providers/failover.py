"""A LanguageModel that tries a chain of providers in order (failover is ours, not the SDKs').

A provider is skipped when it raises before its first event or has not produced a first event
within `first_token_timeout`; its stream is closed (closing the HTTP response) before the next
one starts. Once a provider has produced output, a later error ends the reply with
ProviderError: a half-spoken sentence cannot be restarted on another model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import gevent

from esl_agent.errors import ProviderError
from esl_agent.providers.base import (
    LanguageModel,
    LlmEvent,
    Message,
    ToolSpec,
    TurnToken,
    Usage,
)

log = logging.getLogger(__name__)


class FailoverLanguageModel:
    """Serve each reply from the first provider in `chain` that starts answering in time."""

    def __init__(self, chain: Sequence[LanguageModel], first_token_timeout: float) -> None:
        if not chain:
            raise ValueError("FailoverLanguageModel needs at least one provider")
        self.chain = tuple(chain)
        self.first_token_timeout = first_token_timeout
        self.name = "failover(" + ",".join(p.name for p in self.chain) + ")"
        # Which provider served the most recent reply (for logs); per reply, Usage.provider says.
        self.last_provider = ""

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], turn: TurnToken
    ) -> Iterator[LlmEvent]:
        """Stream one reply from the first provider that answers; Usage.provider names it."""
        failures: list[str] = []
        for provider in self.chain:
            if turn.cancelled:
                return
            events: Iterator[LlmEvent] = iter(())
            timer = gevent.Timeout(self.first_token_timeout)
            timer.start()
            try:
                events = iter(provider.stream(messages, tools, turn))
                first = next(events)
            except StopIteration:
                self.last_provider = provider.name
                return  # an empty reply (e.g. cancelled) is still an answer
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                _close(events)
                failures.append(f"{provider.name}: no first token in {self.first_token_timeout:g}s")
                log.warning("llm provider %s: no first token in %.2fs, failing over",
                            provider.name, self.first_token_timeout)
                continue
            except Exception as exc:
                _close(events)
                failures.append(f"{provider.name}: {exc}")
                log.warning("llm provider %s failed before its first token (%s), failing over",
                            provider.name, type(exc).__name__)
                continue
            finally:
                timer.close()
            self.last_provider = provider.name
            yield from _served(first, events, provider.name)
            return
        raise ProviderError("every LLM provider failed: " + "; ".join(failures))


def _served(first: LlmEvent, events: Iterator[LlmEvent], provider: str) -> Iterator[LlmEvent]:
    """Relay the rest of a started reply; a later failure ends it as ProviderError."""
    try:
        yield _stamp(first, provider)
        for event in events:
            yield _stamp(event, provider)
    except ProviderError:
        raise
    except Exception as exc:
        raise ProviderError(f"{provider}: failed mid-reply: {type(exc).__name__}") from exc
    finally:
        _close(events)


def _stamp(event: LlmEvent, provider: str) -> LlmEvent:
    if isinstance(event, Usage) and not event.provider:
        return Usage(event.input_tokens, event.output_tokens, provider)
    return event


def _close(events: Iterator[LlmEvent]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a broken stream must not hide the original failure
            log.debug("closing a failed llm stream raised", exc_info=True)
