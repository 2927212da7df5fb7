"""Channel data as FreeSWITCH builds it: variables, event headers in the captured order.

Everything comes from the real captures in `templates/channel.tpl` (see tests/fixtures/README.md):
`ChannelData` is the part of `SimulatedCall` that keeps the channel variables and builds the
headers of channel events, the CHANNEL_DATA block and the hangup variables.
"""

from __future__ import annotations

import email.utils
import itertools
import random
import string
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Iterable
from importlib import resources
from typing import Any

Q850 = {
    "NORMAL_CLEARING": 16, "ORIGINATOR_CANCEL": 487, "USER_BUSY": 17, "NO_ANSWER": 19,
    "NO_USER_RESPONSE": 18, "CALL_REJECTED": 21, "NORMAL_TEMPORARY_FAILURE": 41,
    "DESTINATION_OUT_OF_ORDER": 27, "UNALLOCATED_NUMBER": 1, "MANAGER_REQUEST": 16,
    "NORMAL_UNSPECIFIED": 31, "RECOVERY_ON_TIMER_EXPIRE": 102, "MEDIA_TIMEOUT": 0,
}

EVENT_SEQUENCE = itertools.count(1000)
"""Event-Sequence numbers, shared by every call of the process like FreeSWITCH's core."""

# X- headers of the INVITE, as variable_sip_h_<name> (pass sip_headers={} for none)
DEFAULT_SIP_HEADERS = {"X-Sim-Trunk": "esl-agent-sim"}


# ============================================================================ template


def _load_template() -> dict[str, list[tuple[str, string.Template]]]:
    text = resources.files("esl_agent.sim").joinpath("templates/channel.tpl").read_text()
    sections: dict[str, list[tuple[str, string.Template]]] = {}
    current: list[tuple[str, string.Template]] | None = None
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        name, value = line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
        value = value.replace("\\\\", "\x00").replace("\\r", "\r").replace("\\n", "\n")
        value = value.replace("\x00", "\\")
        assert current is not None, "template line before any section"
        current.append((name, string.Template(value)))
    return sections


_TEMPLATE: dict[str, list[tuple[str, string.Template]]] | None = None


def template() -> dict[str, list[tuple[str, string.Template]]]:
    """The sections of `templates/channel.tpl` (loaded once)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = _load_template()
    return _TEMPLATE


def fill(section: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """One template section as headers, `${name}` filled from `values`."""
    return [(k, t.safe_substitute(values)) for k, t in template()[section]]


def timestamp_us() -> int:
    """Wall clock in microseconds (the unit of FreeSWITCH's timestamps)."""
    return int(time.time() * 1_000_000)


# ============================================================================ channel data


class ChannelData:
    """Channel variables and event headers of a `SimulatedCall` (mixed into it)."""

    def _call_values(self) -> dict[str, Any]:
        created = self.created_us / 1e6
        host = "192.0.2.10"
        return {
            "uuid": self.uuid,
            "core_uuid": self.sim.core_uuid,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "destination": self.destination,
            "channel_name": f"sofia/external/{self.caller_number}@{host}:5060",
            "from_uri": f"{self.caller_number}@{host}:5060",
            "to_uri": f"{self.destination}@192.0.2.2:5080",
            "network_addr": host,
            "created_us": self.created_us,
            "created_stamp": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
            "created_epoch": int(created),
            "sip_call_id": f"{uuidlib.uuid4().hex[:16]}@{host}",
            "from_tag": uuidlib.uuid4().hex[:12],
            "to_tag": "".join(random.choices(string.ascii_letters + string.digits, k=13)),
            "via_branch": "z9hG4bK" + uuidlib.uuid4().hex[:12],
            "sip_subject": "esl-agent simulator",
            "session_id": next(self.sim.session_ids),
            "rfc2822_date": email.utils.formatdate(created, localtime=True),
            "ssrc": random.randint(1, 2**32 - 1),
            "local_media_port": random.randrange(16384, 32768, 2),
        }

    def _insert_sip_header(self, name: str, value: str) -> None:
        items = list(self.vars.items())
        at = next((i for i, (k, _) in enumerate(items) if k == "sip_via_port"), len(items) - 1)
        items.insert(at + 1, (f"sip_h_{name}", value))
        self.vars = OrderedDict(items)

    def set_var(self, name: str, value: str | None) -> None:
        """switch_channel_set_variable: delete then append at the end (None/empty unsets)."""
        self.vars.pop(name, None)
        if value is not None and value != "":
            self.vars[name] = value

    def build_event(
        self,
        name: str,
        *,
        subclass: str | None = None,
        calling: tuple[str, str, int] = ("switch_core_session.c", "switch_core_session_exec", 2944),
        variables: bool = True,
        profile: bool = False,
        extra: Iterable[tuple[str, str]] = (),
        hangup_first: bool = False,
    ) -> list[tuple[str, str]]:
        """Headers of a channel event in FreeSWITCH's order (event base, basic, caller, vars)."""
        now_us = timestamp_us()
        now_s = now_us / 1e6
        values = dict(self._subst)
        values.update(
            event_name=name,
            date_local=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now_s)),
            date_gmt=email.utils.formatdate(now_s, usegmt=True),
            timestamp_us=now_us,
            calling_file=calling[0],
            calling_function=calling[1],
            calling_line=calling[2],
            sequence=next(EVENT_SEQUENCE),
            channel_state=self.channel_state,
            call_state=self.call_state,
            state_number=self.state_number,
            answer_state=self.answer_state,
            answered_us=self.answered_us,
            progress_media_us=self.answered_us,
            hangup_us=self.hangup_us if self.channel_state == "CS_REPORTING" else 0,
        )
        headers: list[tuple[str, str]] = []
        if subclass:
            headers.append(("Event-Subclass", subclass))
        headers += fill("event_base", values)
        if hangup_first and self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        if profile:
            headers += fill("channel_profile", values)
        headers += fill("basic", values)
        if self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        if self.media_up:
            headers += fill("codecs", values)
        headers += fill("caller", values)
        if variables:
            headers += [(f"variable_{k}", v) for k, v in self.vars.items()]
        headers += list(extra)
        return headers

    def base_headers(self, name: str, calling: tuple[str, str, int]) -> list[tuple[str, str]]:
        """Event-Name .. Event-Sequence only (events without channel data)."""
        now_us = timestamp_us()
        values = dict(self._subst)
        values.update(
            event_name=name,
            date_local=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now_us / 1e6)),
            date_gmt=email.utils.formatdate(now_us / 1e6, usegmt=True), timestamp_us=now_us,
            calling_file=calling[0], calling_function=calling[1], calling_line=calling[2],
            sequence=next(EVENT_SEQUENCE))
        return fill("event_base", values)

    def _add_hangup_vars(self, disposition: str) -> None:
        end_us = self.hangup_us
        ans_us = self.answered_us
        dur_us = max(0, end_us - self.created_us)
        bill_us = max(0, end_us - ans_us) if ans_us else 0
        last_app = self.vars.get("current_application", "socket")
        values = dict(self._subst)
        values.update(
            hangup_cause=self.hangup_cause, hangup_q850=Q850.get(self.hangup_cause or "", 0),
            last_app=last_app, hangup_disposition=disposition,
            answer_us=ans_us, answer_epoch=ans_us // 1_000_000,
            answer_stamp=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ans_us / 1e6))
            if ans_us else "",
            end_us=end_us, end_epoch=end_us // 1_000_000,
            end_stamp=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end_us / 1e6)),
            duration_s=dur_us // 1_000_000, duration_ms=dur_us // 1000, duration_us=dur_us,
            bill_s=bill_us // 1_000_000, bill_ms=bill_us // 1000, bill_us=bill_us,
            rtp_in_bytes=0, rtp_in_packets=0, rtp_out_bytes=0, rtp_out_packets=0,
        )
        for k, v in fill("variables_hangup", values):
            self.set_var(k[len("variable_"):], v)
