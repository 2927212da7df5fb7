"""`conf lint` catches each stock pitfall in a crafted bad tree and passes the shipped conf."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from esl_agent.cli import main
from esl_agent.policy.lint import lint_paths

ROOT = Path(__file__).resolve().parents[2]
BAD = Path(__file__).parent / "fixtures" / "stock-conf"


@pytest.fixture(scope="module")
def findings() -> list[tuple[str, str, str]]:
    return [(f.code, Path(f.path).relative_to(BAD).as_posix(), f.message) for f in lint_paths([BAD])]


@pytest.mark.parametrize(
    ("code", "rel", "fragment"),
    [
        ("default-password", "vars.xml", "stock or weak default_password"),
        ("default-password", "autoload_configs/event_socket.conf.xml", "ClueCon"),
        ("listen-any", "autoload_configs/event_socket.conf.xml", "listen-ip :: listens on every interface"),
        ("listen-any", "sip_profiles/external.xml", "sip-ip 0.0.0.0"),
        ("esl-no-acl", "autoload_configs/event_socket.conf.xml", "without apply-inbound-acl"),
        ("acl-default", "autoload_configs/acl.conf.xml", "'lan'"),
        ("acl-default", "autoload_configs/acl.conf.xml", "'providers'"),
        ("profile-no-acl", "sip_profiles/external.xml", "'external'"),
        ("catch-all", "dialplan/default.xml", "'domestic'"),
        ("catch-all", "dialplan/default.xml", "'international'"),
        ("catch-all", "dialplan/default.xml", "'no_destination_check' bridges out with no destination check"),
        ("public-to-default", "dialplan/public.xml", "'public_extensions'"),
        ("public-to-default", "dialplan/public.xml", "'public_did'"),
    ],
)
def test_each_pitfall_found(findings: list, code: str, rel: str, fragment: str) -> None:
    assert any(c == code and r == rel and fragment in m for c, r, m in findings), findings


def test_exact_number_of_findings(findings: list) -> None:
    # 'domains' (default deny) and 'local_extension' (bridges to user/) are fine.
    assert len(findings) == 13, findings
    assert not any("'domains'" in m or "local_extension" in m for _, _, m in findings)


def test_shipped_conf_passes() -> None:
    assert lint_paths([ROOT / "conf" / "freeswitch"]) == []


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conf", "lint", str(ROOT / "conf" / "freeswitch")]) == 0
    assert "conf lint: OK" in capsys.readouterr().out
    assert main(["conf", "lint", str(BAD)]) == 1
    out = capsys.readouterr().out
    assert "13 problem(s)" in out and "public-to-default" in out
    assert main(["conf", "lint", str(tmp_path / "nope")]) == 2


def test_one_pitfall_added_to_good_conf_fails(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "conf" / "freeswitch", tmp_path / "fs")
    acl = tmp_path / "fs" / "autoload_configs" / "acl.conf.xml"
    acl.write_text(acl.read_text().replace('<list name="domains" default="deny">', '<list name="domains">'))
    assert [f.code for f in lint_paths([tmp_path / "fs"])] == ["acl-default"]


def test_unparseable_xml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.xml").write_text("<include><context name='public'></include>")
    assert [f.code for f in lint_paths([tmp_path])] == ["parse"]


@pytest.mark.parametrize(
    ("value", "flagged"),
    [("1234", True), ("2345", True), ("98765432109876", True), ("short-pw", True), ("Vq7-dk2!Lr9#pX4w", False)],
)
def test_default_password_strength(tmp_path: Path, value: str, flagged: bool) -> None:
    line = f'<X-PRE-PROCESS cmd="set" data="default_password={value}"/>'
    (tmp_path / "vars.xml").write_text(f"<include>\n  {line}\n</include>\n")
    assert [f.code for f in lint_paths([tmp_path])] == (["default-password"] if flagged else [])
