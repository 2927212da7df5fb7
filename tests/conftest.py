"""Shared test set-up: gevent patching happens once, before anything opens a socket."""

from esl_agent import runtime

runtime.init()
