"""The LLM's tools: transfers through the dial policy and audit, hang-up, lookup, messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esl_agent.agent.contacts import YamlContactStore
from esl_agent.agent.tools import AgentTools
from esl_agent.config import AgentSettings
from esl_agent.providers.base import Message, ToolCall

from .fakes import FakeAudit, FakeCall, FakePolicy, NaivePolicy

CONTACTS = """
contacts:
  - name: Markus
    numbers: ["0664 1234567"]
    transfer: "201"
  - name: Anna Berger
    numbers: ["0676 765 43 21"]
    notes: Head of accounting.
  - name: Anna Huber
    numbers: ["0699 1112223"]
  - name: Premium Pete
    numbers: ["0900 123456"]
  - name: Nobody Reachable
"""


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = tmp_path / "contacts.yaml"
    p.write_text(CONTACTS, encoding="utf-8")
    call, policy, audit = FakeCall(), FakePolicy(), FakeAudit()
    history = [Message("user", "Hi, I need Anna Berger"), Message("assistant", "Sure.")]
    tools = AgentTools(
        call, YamlContactStore(p), policy, audit,
        AgentSettings(transfer_dialplan="XML", transfer_context="agents"),
        messages_path=tmp_path / "messages.jsonl", transcript=lambda: history,
    )
    return tools, call, policy, audit


def run(tools: AgentTools, tool: str, **args):  # type: ignore[no-untyped-def]
    return tools.execute(ToolCall(id="t1", name=tool, arguments=args))


def test_specs() -> None:
    call = FakeCall()
    tools = AgentTools(call, YamlContactStore("/nonexistent.yaml"), FakePolicy(), FakeAudit(), AgentSettings())
    names = [s.name for s in tools.specs()]
    assert names == ["transfer_call", "lookup_contact", "hang_up", "take_message"]
    for spec in tools.specs():
        assert spec.parameters["type"] == "object" and spec.description
        json.dumps(spec.parameters)


def test_transfer_to_contact_after_speech(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, policy, audit = env
    result = run(tools, "transfer_call", name="Anna Berger")
    assert not result.is_error and result.ends_call and "Anna Berger" in result.content
    assert call.transfers == []  # nothing happens before the confirming sentence was played
    assert policy.checked == [("+436767654321", "+436641234567", "out")]
    assert result.after_speech is not None
    outcome = result.after_speech()
    assert outcome.ok
    assert call.transfers == [("+436767654321", "XML", "esl_agent_outbound")]
    assert result.after_speech().ok is False  # runs once
    assert call.transfers == [("+436767654321", "XML", "esl_agent_outbound")]
    assert audit.entries[0]["action"] == "transfer" and audit.entries[0]["decision"].allowed
    assert audit.entries[0]["contact"] == "anna-berger"


def test_transfer_first_name_typo(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, _, _ = env
    result = run(tools, "transfer_call", name="Marcus")
    assert result.after_speech is not None
    result.after_speech()
    assert call.transfers == [("201", "XML", "agents")]  # the contact's extension


def test_transfer_to_premium_contact_denied(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, _, audit = env
    result = run(tools, "transfer_call", name="Premium Pete")
    assert result.is_error and result.after_speech is None and not result.ends_call
    assert "premium numbers" in result.content
    assert call.transfers == []
    assert audit.entries[-1]["decision"].rule == "block:premium"


def test_transfer_to_premium_number_denied(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, policy, audit = env
    result = run(tools, "transfer_call", number="0900 123 456")
    assert result.is_error and result.after_speech is None
    assert "I'm sorry, I can't connect you to premium numbers." in result.content
    assert policy.checked[-1][0] == "0900 123 456"
    assert len(audit.entries) == 1 and not audit.entries[0]["decision"].allowed
    assert audit.entries[0]["source"] == "spoken"
    assert call.transfers == []
    # the call is not ending: a later allowed transfer still works
    ok = run(tools, "transfer_call", number="+49 30 1234567")
    assert ok.after_speech is not None and ok.after_speech().ok
    assert call.transfers == [("+49301234567", "XML", "esl_agent_outbound")]


@pytest.mark.parametrize(
    "number",
    [
        "+436641234567 XML default",
        "+436641234567\nhangup",
        "user/1000@example.com",
        "{origination_caller_id_number=1}sofia/gateway/x/+4366412345",
        "+43664123;uuid_kill",
        "${base_dir}",
        "&bridge(sofia/gateway/gw/0900123)",
        "1" * 60,
        "201",  # extensions only via a contact
    ],
)
def test_injection_never_reaches_transfer(env, number: str) -> None:  # type: ignore[no-untyped-def]
    tools, call, _, audit = env
    naive = NaivePolicy()
    tools.policy = naive  # even a policy that allows everything cannot get it dialled
    result = run(tools, "transfer_call", number=number)
    if result.after_speech is not None:
        result.after_speech()
    assert call.transfers == []
    assert result.is_error and result.after_speech is None
    assert audit.entries and not audit.entries[-1]["decision"].allowed


def test_unknown_and_ambiguous_names(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, policy, _ = env
    unknown = run(tools, "transfer_call", name="Zacharias Quist")
    assert unknown.is_error and "No contact" in unknown.content
    ambiguous = run(tools, "transfer_call", name="Anna")
    assert ambiguous.is_error and "Anna Berger" in ambiguous.content and "Anna Huber" in ambiguous.content
    none = run(tools, "transfer_call", name="Nobody Reachable")
    assert none.is_error and "no number" in none.content
    assert call.transfers == [] and policy.checked == []


def test_hang_up_after_speech_and_no_second_ending(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, _, _ = env
    result = run(tools, "hang_up", reason="caller said bye")
    assert result.ends_call and call.hangups == []
    again = run(tools, "transfer_call", name="Anna Berger")
    assert again.is_error and "already ending" in again.content
    assert result.after_speech is not None and result.after_speech().ok
    assert call.hangups == ["NORMAL_CLEARING"] and call.transfers == []


def test_lookup_contact_without_numbers(env) -> None:  # type: ignore[no-untyped-def]
    tools, _, _, _ = env
    result = run(tools, "lookup_contact", name="Berger")
    assert "Anna Berger" in result.content and "Head of accounting" in result.content
    assert "676" not in result.content  # numbers are never handed to the model
    assert "No contact" in run(tools, "lookup_contact", name="Zacharias").content


def test_take_message_appends_jsonl(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tools, _, _, _ = env
    assert not run(tools, "take_message", text="Please call Markus back about the report.").is_error
    assert not run(tools, "take_message", text="Second one.").is_error
    lines = (tmp_path / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["message"] == "Please call Markus back about the report."
    assert first["caller_number"] == "+436641234567" and first["caller_name"] == "Markus"
    assert first["call_uuid"] == "call-1"
    assert first["transcript"][0] == {"role": "user", "content": "Hi, I need Anna Berger"}


@pytest.mark.parametrize(
    ("tool", "args", "fragment"),
    [
        ("dial_everyone", {}, "no tool named"),
        ("transfer_call", {}, "name or a phone number"),
        ("transfer_call", {"name": 42}, "must be a string"),
        ("transfer_call", {"name": "Anna", "extra": 1}, "unexpected argument"),
        ("take_message", {}, "'text' is required"),
        ("take_message", {"text": "x" * 5000}, "too long"),
        ("lookup_contact", {"name": ["a"]}, "must be a string"),
    ],
)
def test_bad_calls_give_error_text(env, tool, args, fragment) -> None:  # type: ignore[no-untyped-def]
    tools, call, _, _ = env
    result = tools.execute(ToolCall(id="t1", name=tool, arguments=args))
    assert result.is_error and fragment in result.content
    assert call.transfers == [] and call.hangups == []


def test_non_dict_arguments_and_failing_policy(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, _, audit = env
    bad = tools.execute(ToolCall(id="x", name="hang_up", arguments="{oops"))  # type: ignore[arg-type]
    assert bad.is_error and "JSON object" in bad.content

    class Exploding:
        def check(self, number, *, caller=None, direction="out"):  # type: ignore[no-untyped-def]
            raise RuntimeError("policy file vanished")

    tools.policy = Exploding()
    result = run(tools, "transfer_call", number="+43 1 234 5678")
    assert result.is_error and call.transfers == []
    assert audit.entries[-1]["decision"].rule == "error:policy failed"


def test_unaudited_transfer_is_refused(env) -> None:  # type: ignore[no-untyped-def]
    tools, call, _, _ = env

    class BrokenAudit:
        def append(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise OSError(28, "No space left on device")

    tools.audit = BrokenAudit()
    for args in ({"name": "Anna Berger"}, {"name": "Markus"}, {"number": "+43 1 234 5678"}):
        result = run(tools, "transfer_call", **args)
        assert result.is_error and result.after_speech is None and "can't place that call" in result.content
    assert call.transfers == []


def test_with_real_dial_policy_and_audit_log(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from esl_agent.policy.audit import AuditLog
    from esl_agent.policy.dialing import DialPolicy

    tools, call, _, _ = env
    tools.policy = DialPolicy.from_file(Path(__file__).resolve().parents[2] / "conf" / "policy.yaml")
    tools.audit = AuditLog(tmp_path / "audit.log")
    denied = run(tools, "transfer_call", number="0900 123456")
    assert denied.is_error and "premium" in denied.content and call.transfers == []
    allowed = run(tools, "transfer_call", name="Anna Berger")
    assert allowed.after_speech is not None and allowed.after_speech().ok
    assert call.transfers == [("+436767654321", "XML", "esl_agent_outbound")]
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(r["action"], r["allowed"]) for r in records] == [("transfer", False), ("transfer", True)]
    assert records[1]["number"] == "+436767654321" and records[1]["contact"] == "anna-berger"
