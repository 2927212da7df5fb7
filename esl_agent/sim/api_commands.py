"""`api` and `bgapi` commands of the simulated event socket (uuid_* as mod_commands answers).

`ApiCommands` (mixed into `SimulatedCall`) runs `api <cmd>` in the listener (blocking, like
FreeSWITCH's listener thread) and `bgapi <cmd>` in the background with a BACKGROUND_JOB event.
A command `x` is served by `_api_x`; `Faults.api_errors` overrides any answer.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import TYPE_CHECKING

from esl_agent.sim import esl_codec
from esl_agent.sim.dialplan import App
from esl_agent.sim.fork_client import audio_fork_api

if TYPE_CHECKING:
    from esl_agent.sim.freeswitch import SimulatedCall


class ApiCommands:
    """The api commands of a `SimulatedCall` (mixed into it)."""

    def _cmd_bgapi(self, cmd: esl_codec.Command) -> None:
        job = cmd.header("Job-UUID") or str(uuidlib.uuid4())
        self._reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)])
        line = cmd.arg

        def run() -> None:
            out = self._api_output(line)
            parts = line.split(" ", 1)
            base = self.base_headers("BACKGROUND_JOB", ("mod_event_socket.c", "api_exec", 1608))
            base += [("Job-UUID", job), ("Job-Owner-UUID", self.uuid),
                     ("Job-Command", parts[0]), ("Job-Command-Arg", parts[1] if len(parts) > 1 else "")]
            self.fire("BACKGROUND_JOB", base, out)

        self._spawn(run)

    def _cmd_api(self, cmd: esl_codec.Command) -> None:
        out = self._api_output(cmd.arg)
        self._write(esl_codec.api_response(out))
        self.record("api_response", body=out.strip()[:200])

    def _api_output(self, line: str) -> str:
        parts = line.strip().split(" ", 1)
        name = parts[0]
        arg = parts[1] if len(parts) > 1 else ""
        if name in self.faults.api_errors:
            return self.faults.api_errors[name]
        fn = getattr(self, f"_api_{name}", None)
        if fn is None:
            return f"-ERR {name} Command not found!\n"
        return fn(arg)

    def _target(self, arg: str) -> tuple[SimulatedCall | None, list[str]]:
        tokens = arg.split(" ")
        if not tokens or not tokens[0]:
            return None, tokens
        call = self.sim.calls_by_uuid.get(tokens[0])
        if call is None or call._finished or call.answer_state == "hangup":
            return None, tokens
        return call, tokens

    def _api_uuid_exists(self, arg: str) -> str:
        call, _ = self._target(arg.strip())
        return "true" if call else "false"

    def _api_uuid_break(self, arg: str) -> str:
        call, tokens = self._target(arg)
        if call is None:
            return "-ERR No such channel!\n"
        flush = len(tokens) > 1 and tokens[1] == "all"
        call.break_playback(reason="uuid_break", flush=flush)
        return "+OK\n"

    def _api_uuid_kill(self, arg: str) -> str:
        call, tokens = self._target(arg)
        if call is None:
            return "-ERR No such channel!\n"
        cause = tokens[1] if len(tokens) > 1 and tokens[1] else "NORMAL_CLEARING"
        call._spawn(call._do_hangup, cause, "send_bye", "uuid_kill")
        return "+OK\n"

    def _api_uuid_setvar(self, arg: str) -> str:
        tokens = arg.split(" ", 2)
        if len(tokens) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        call.set_var(tokens[1], tokens[2] if len(tokens) > 2 else None)
        call.record("setvar", name=tokens[1], value=tokens[2] if len(tokens) > 2 else None)
        return "+OK\n"

    def _api_uuid_setvar_multi(self, arg: str) -> str:
        tokens = arg.split(" ", 1)
        if len(tokens) < 2:
            return "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        for pair in tokens[1].split(";"):
            if "=" in pair:
                k, v = pair.split("=", 1)
                call.set_var(k, v)
                call.record("setvar", name=k, value=v)
        return "+OK\n"

    def _api_uuid_getvar(self, arg: str) -> str:
        tokens = arg.split(" ")
        if len(tokens) < 2:
            return "-USAGE: <uuid> <var>\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        return call.vars.get(tokens[1]) or "_undef_"

    def _api_uuid_dump(self, arg: str) -> str:
        tokens = arg.split(" ")
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        headers = call.build_event(
            "CHANNEL_DATA", calling=("mod_commands.c", "uuid_dump_function", 5900), profile=True)
        if len(tokens) > 1 and tokens[1] == "json":
            return esl_codec.serialize_json(headers).decode()
        return "".join(f"{k}: {v}\n" for k, v in headers)

    def _api_uuid_transfer(self, arg: str) -> str:
        tokens = [t for t in arg.split(" ") if t]
        if len(tokens) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR No such channel!\n"
        rest = [t for t in tokens[1:] if t not in ("-bleg", "-both")]
        dest = rest[0]
        dialplan = rest[1] if len(rest) > 1 else "XML"
        context = rest[2] if len(rest) > 2 else "public"
        call._spawn(call._transfer, dest, dialplan, context)
        return "+OK\n"

    def _api_uuid_broadcast(self, arg: str) -> str:
        tokens = arg.split(" ")
        if len(tokens) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
        call, _ = self._target(tokens[0])
        if call is None:
            return "-ERR invalid uuid\n"
        path = tokens[1]
        app, app_arg = ("playback", path)
        if "::" in path:
            app, app_arg = path.split("::", 1)
        call._apps.append(App(app, app_arg, str(uuidlib.uuid4())))
        call._apps_ready.set()
        return "+OK Message sent\n"

    def _api_uuid_audio_fork(self, arg: str) -> str:
        return audio_fork_api(self.sim, arg)
