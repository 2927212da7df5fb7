"""Configuration errors: one clear message naming the file and the key, exit code 2, no traceback."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from esl_agent import cli, config
from esl_agent.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "conf" / "agent.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_example_config_loads_and_equals_the_defaults() -> None:
    loaded = config.load(EXAMPLE, env={"GROQ_API_KEY": "x", "ANTHROPIC_API_KEY": "y"})
    defaults = config.Settings()
    assert dataclasses.replace(loaded, source="<defaults>") == defaults


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()

    import typing

    def walk(cls: type, prefix: str) -> list[str]:
        keys = []
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            keys.append(prefix + f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                keys += walk(hints[f.name], prefix + f.name + ".")
        return keys

    keys = walk(config.Settings, "")
    assert "stt.offline.beam_size" in keys
    for key in keys:
        assert f"{key.rsplit('.', 1)[-1]}:" in text, f"conf/agent.example.yaml does not document {key}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("server:\n  esl_listen: 127.0.0.1:8084\n  bogus: 1\n", "server.bogus: unknown key"),
        ("nonsense: {}\n", "nonsense: unknown key"),
        ("server:\n  max_calls: many\n", "server.max_calls: expected an integer, got a string"),
        ("pipeline:\n  sentence_streaming: 'yes'\n", "pipeline.sentence_streaming: expected true or false"),
        ("server:\n  esl_listen: 127.0.0.1\n", "server.esl_listen: expected host:port"),
        ("server:\n  fork_listen: example.com:80\n", "server.fork_listen: 'example.com' is not an IP address"),
        ("server:\n  esl_listen: 127.0.0.1:99999\n", "server.esl_listen: expected host:port"),
        ("server:\n  fork_url: http://x\n", "server.fork_url: must start with ws://"),
        ("fork:\n  mode: magic\n", "fork.mode: must be one of stream, play_audio"),
        ("llm:\n  chain: [groq]\n", "llm.groq.api_key_env: environment variable GROQ_API_KEY is not set"),
        ("llm:\n  chain: [gpt5]\n", "llm.chain[0]: unknown provider 'gpt5'"),
        ("llm:\n  chain: scripted\n", "llm.chain: expected a list"),
        ("server: [1, 2]\n", "server: expected a mapping"),
        ("server:\n  esl_listen: [oops\n", "invalid YAML"),
        ("- a\n- b\n", "the top level must be a mapping"),
    ],
)
def test_each_class_of_error_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path, env={})
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_secret_present_in_environment_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "llm:\n  chain: [groq, scripted]\n")
    settings = config.load(path, env={"GROQ_API_KEY": "gsk-test"})
    assert settings.llm.chain == ["groq", "scripted"]
    assert config.secret("GROQ_API_KEY", {"GROQ_API_KEY": "gsk-test"}) == "gsk-test"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(tmp_path / "nope.yaml")


def test_cli_exit_code_2_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "server:\n  max_calls: lots\n")
    assert cli.main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "server.max_calls" in err and str(path) in err
    assert "Traceback" not in err


def test_cli_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "demo", "check-config", "simulate", "conf", "policy", "audit", "digest"):
        assert command in out, command
