"""Outbound calls: `originate` over FreeSWITCH's inbound event socket, for allowed numbers only.

Only a `Decision` that the dial policy allowed (and the audit log recorded) can reach this code;
the target comes from `Decision.originate_target()`, which is built from a checked E.164 number
and runs through the rendered outbound context, so FreeSWITCH checks it once more. The answered
leg is handed to this controller with the same `socket` application inbound calls use.
"""

from __future__ import annotations

import gevent
from greenswitch.esl import InboundESL

from esl_agent.errors import CommandError
from esl_agent.policy.dialing import Decision


class Originator:
    """Starts outbound calls through an inbound ESL connection (password from the environment)."""

    def __init__(self, host: str, port: int, password: str, socket_target: str, caller_id: str = "",
                 timeout: float = 5.0) -> None:
        self._host, self._port, self._password = host, port, password
        self._socket_target = socket_target
        self._caller_id = caller_id
        self._timeout = timeout

    def command(self, decision: Decision) -> str:
        """The bgapi command for an allowed decision (raises PolicyDenied otherwise)."""
        target = decision.originate_target()
        variables = "origination_caller_id_number=" + self._caller_id if self._caller_id else ""
        prefix = "{" + variables + "}" if variables else ""
        return f"bgapi originate {prefix}{target} &socket({self._socket_target} async full)"

    def originate(self, decision: Decision) -> str:
        """Send the originate; returns FreeSWITCH's Job-UUID reply."""
        cmd = self.command(decision)
        esl = InboundESL(self._host, self._port, self._password, timeout=self._timeout)
        try:
            with gevent.Timeout(self._timeout, CommandError("originate", "-ERR timeout")):
                esl.connect()
                reply = esl.send(cmd)
        except (OSError, ValueError) as exc:
            raise CommandError("originate", f"-ERR {type(exc).__name__}") from None
        finally:
            try:
                esl.stop()
            except Exception:
                pass
        text = getattr(reply, "data", "") or ""
        if not text.startswith("+OK"):
            raise CommandError("originate", text or "-ERR no reply")
        return text.removeprefix("+OK").strip()
