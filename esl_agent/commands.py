"""Core sub-commands: run, simulate, demo, check-config."""

from __future__ import annotations

import argparse

from esl_agent import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a config file and print the effective settings")
    p.add_argument("--config", default="conf/agent.example.yaml")
    p.set_defaults(func=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    print(f"{settings.source}: OK")
    print(f"  event socket {settings.server.esl_listen}, fork {settings.server.fork_listen} ({settings.fork.mode})")
    print(f"  stt={settings.stt.provider} llm={' -> '.join(settings.llm.chain)} tts={settings.tts.provider}")
    return 0
