"""Sub-commands: conf render/lint, policy check, audit verify, digest."""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

from esl_agent.errors import ConfigError
from esl_agent.ops import deploy as deploy_mod
from esl_agent.ops import digest as digest_mod
from esl_agent.ops.cost import Rates
from esl_agent.policy import lint, render
from esl_agent.policy.audit import AuditLog
from esl_agent.policy.dialing import DialPolicy
from esl_agent.policy.secrets import RotationError, rotate_trunk_password

DEFAULT_POLICY = "conf/policy.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    conf = sub.add_parser("conf", help="render or lint the FreeSWITCH/firewall/fail2ban config")
    conf_sub = conf.add_subparsers(dest="conf_command", metavar="ACTION")
    p = conf_sub.add_parser("render", help="write conf/freeswitch, conf/firewall, conf/fail2ban from the policy")
    p.add_argument("--policy", default=DEFAULT_POLICY)
    p.add_argument("--out", default="conf", help="directory to write into (default conf)")
    p.add_argument("--check", action="store_true", help="only report files that are stale (exit 1)")
    p.set_defaults(func=_conf_render)
    p = conf_sub.add_parser("lint", help="fail on the stock FreeSWITCH pitfalls")
    p.add_argument("paths", nargs="*", default=["conf/freeswitch"])
    p.set_defaults(func=_conf_lint)
    conf.set_defaults(func=lambda a: _usage(conf))

    pol = sub.add_parser("policy", help="ask the dial policy about a number")
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="ACTION")
    p = pol_sub.add_parser("check", help="verdict and rule for NUMBER (exit 0 allowed, 1 denied, 2 bad input)")
    p.add_argument("number")
    p.add_argument("--caller", default=None, help="caller ID (direction in)")
    p.add_argument("--direction", choices=("in", "out"), default="out")
    p.add_argument("--policy", default=DEFAULT_POLICY)
    p.set_defaults(func=_policy_check)
    pol.set_defaults(func=lambda a: _usage(pol))

    aud = sub.add_parser("audit", help="the outbound audit log")
    aud_sub = aud.add_subparsers(dest="audit_command", metavar="ACTION")
    p = aud_sub.add_parser("verify", help="check the hash chain (exit 1 at the first bad line)")
    p.add_argument("path", nargs="?", default="var/audit.log")
    p.set_defaults(func=_audit_verify)
    aud.set_defaults(func=lambda a: _usage(aud))

    p = sub.add_parser("digest", help="daily digest: SIP probes, blocked numbers, calls, cost")
    p.add_argument("--date", default=None, help="YYYY-MM-DD (default: yesterday)")
    p.add_argument("--log", default="/var/log/freeswitch/freeswitch.log")
    p.add_argument("--cdr", default="/var/log/freeswitch/cdr-csv/Master.csv")
    p.add_argument("--audit", default="var/audit.log")
    p.add_argument("--fail2ban-log", default="/var/log/fail2ban.log")
    p.add_argument("--policy", default=DEFAULT_POLICY)
    p.add_argument("--smtp", default="", help="host:port of an SMTP relay; mail the digest")
    p.add_argument("--mail-from", default="esl-agent@localhost")
    p.add_argument("--mail-to", default="")
    p.set_defaults(func=_digest)

    p = sub.add_parser("verify-hardening", help="fs_cli/ufw/ss checks on the server (green/red per check)")
    p.add_argument("--policy", default=DEFAULT_POLICY)
    p.add_argument("--fs-cli", default="fs_cli")
    p.add_argument("--no-ufw", action="store_true", help="skip the ufw check (nftables hosts)")
    p.add_argument("--no-color", action="store_true")
    p.set_defaults(func=_verify_hardening)

    trunk = sub.add_parser("trunk", help="SIP trunk maintenance")
    trunk_sub = trunk.add_subparsers(dest="trunk_command", metavar="ACTION")
    p = trunk_sub.add_parser(
        "rotate-password",
        help="read the new trunk password from stdin (never an argument), write it 0600, re-register",
    )
    p.add_argument("--policy", default=DEFAULT_POLICY)
    p.add_argument("--fs-cli", default="fs_cli")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for REGED")
    p.set_defaults(func=_rotate_password)
    trunk.set_defaults(func=lambda a: _usage(trunk))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _conf_render(args: argparse.Namespace) -> int:
    policy = DialPolicy.from_file(args.policy)
    if args.check:
        stale = render.stale(policy, args.out)
        for rel in stale:
            print(f"stale: {Path(args.out) / rel} (run `make conf`)")
        return 1 if stale else 0
    for path in render.write(render.render(policy), args.out):
        print(f"wrote {path}")
    return 0


def _conf_lint(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"esl-agent conf lint: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    findings = lint.lint_paths(args.paths)
    for f in findings:
        print(f)
    print(f"{len(findings)} problem(s)" if findings else "conf lint: OK")
    return 1 if findings else 0


def _policy_check(args: argparse.Namespace) -> int:
    policy = DialPolicy.from_file(args.policy)
    decision = policy.check(args.number, caller=args.caller, direction=args.direction)
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    print(f"{verdict} {decision.number!r} rule={decision.rule}")
    if not decision.allowed and decision.spoken:
        print(f"spoken: {decision.spoken}")
    if decision.allowed:
        return 0
    # Bad input is the number itself being unreadable (not a bad caller ID on direction in).
    return 2 if decision.rule.startswith("invalid:") else 1


def _audit_verify(args: argparse.Namespace) -> int:
    if not Path(args.path).exists():
        print(f"esl-agent audit verify: {args.path}: no such file", file=sys.stderr)
        return 2
    ok, bad = AuditLog.verify(args.path)
    if ok:
        print(f"{args.path}: chain intact ({len(AuditLog.records(args.path))} records)")
        return 0
    print(f"{args.path}: chain BROKEN at line {bad}")
    return 1


def _digest(args: argparse.Namespace) -> int:
    day = args.date or (date.today() - timedelta(days=1)).isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        raise ConfigError(f"--date: expected YYYY-MM-DD, got {day!r}") from None
    rates = Rates()
    if Path(args.policy).exists():
        rates = Rates.from_policy(DialPolicy.from_file(args.policy))
    d = digest_mod.build(
        day, log=args.log, cdr=args.cdr, audit=args.audit, fail2ban_log=args.fail2ban_log, rates=rates
    )
    sys.stdout.write(d.text())
    if args.smtp:
        if not args.mail_to:
            raise ConfigError("--smtp needs --mail-to")
        host, _, port = args.smtp.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--smtp: expected host:port, got {args.smtp!r}")
        digest_mod.send_mail(d, host=host, port=int(port), sender=args.mail_from, to=args.mail_to)
        print(f"mailed to {args.mail_to}")
    return 0 if d.audit_ok is not False else 1


def _verify_hardening(args: argparse.Namespace) -> int:
    policy = DialPolicy.from_file(args.policy)
    checks = deploy_mod.verify(policy, fs_cli=args.fs_cli, ufw=not args.no_ufw)
    for check in checks:
        print(check.line(color=not args.no_color and sys.stdout.isatty()))
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed}/{len(checks)} checks passed")
    return 1 if failed else 0


def _rotate_password(args: argparse.Namespace) -> int:
    policy = DialPolicy.from_file(args.policy)
    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("new trunk password (not echoed): ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    try:
        state = rotate_trunk_password(
            policy, secret, run=deploy_mod.run_command, fs_cli=args.fs_cli, deadline_s=args.timeout
        )
    except RotationError as exc:
        print(f"esl-agent trunk rotate-password: {exc}", file=sys.stderr)
        return 1
    finally:
        secret = ""
    print(f"trunk password rotated; gateway state {state}")
    return 0
