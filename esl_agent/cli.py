"""The `esl-agent` command line: one sub-command per job.

Each command module exposes `register(subparsers)` and sets `func` on its parser; the function
takes the parsed arguments and returns an exit code. A ConfigError anywhere ends with its one-line
message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from esl_agent import __version__
from esl_agent.errors import ConfigError

# Modules that add sub-commands, in the order `--help` lists them.
COMMAND_MODULES = [
    "esl_agent.commands",
    "esl_agent.policy.commands",
    "esl_agent.sim.commands",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="esl-agent",
        description="Self-hosted AI phone agent for FreeSWITCH (outbound event socket + mod_audio_fork).",
    )
    parser.add_argument("--version", action="version", version=f"esl-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"esl-agent: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
