"""Core sub-commands: run, demo, check-config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esl_agent import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the controller for a real FreeSWITCH")
    p.add_argument("--config", default="conf/agent.yaml", help="YAML config (default conf/agent.yaml)")
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="one whole simulated call: controller + FreeSWITCH simulator, offline engines")
    p.add_argument("--out", default="demo-out", help="where to write the caller's WAV and JSON timeline")
    p.add_argument("--short", action="store_true", help="one utterance only (CI)")
    p.add_argument("--fork-mode", choices=["stream", "play_audio"], default="stream")
    p.set_defaults(func=_demo)

    p = sub.add_parser("check-config", help="validate a config file and print the effective settings")
    p.add_argument("--config", default="conf/agent.example.yaml")
    p.set_defaults(func=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    print(f"{settings.source}: OK")
    print(f"  event socket {settings.server.esl_listen}, fork {settings.server.fork_listen} ({settings.fork.mode})")
    print(f"  stt={settings.stt.provider} llm={' -> '.join(settings.llm.chain)} tts={settings.tts.provider}")
    return 0


def _run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    if not path.exists() and args.config == "conf/agent.yaml":
        print("NOTICE: conf/agent.yaml not found; using conf/agent.example.yaml", file=sys.stderr)
        path = Path("conf/agent.example.yaml")
    settings = config.load(path)
    from esl_agent import logs, runtime

    runtime.init()
    logs.setup(settings.ops.log_level)
    from esl_agent.app import Controller
    from esl_agent.assembly import build_agent

    agent = build_agent(settings)
    controller = Controller(settings, agent.conversation, **agent.controller_options())
    import gc

    gc.collect()
    gc.freeze()  # start-up objects (models, SDKs) leave the collector's generations: shorter full GCs
    controller.serve_forever()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from esl_agent import runtime

    runtime.init()
    from esl_agent.demo import run_demo

    return run_demo(Path(args.out), short=args.short, fork_mode=args.fork_mode)
