#!/usr/bin/env bash
# make deploy HOST=user@host: install the controller and the rendered FreeSWITCH conf on a server.
#
#   scripts/deploy.sh user@host            over ssh/rsync (the remote user needs sudo)
#   DRY_RUN=1 scripts/deploy.sh user@host  print every step, change nothing anywhere
#   DEPLOY_ROOT=/tmp/srv scripts/deploy.sh install into a local directory tree standing in for
#                                          the server (tests); no ssh, and the service commands
#                                          (pip, systemctl, fs_cli, ufw, fail2ban) are written to
#                                          <root>/var/lib/esl-agent/post-install.sh, not run.
# Options (environment): POLICY=conf/policy.yaml  FIREWALL=ufw|nftables|none  FREESWITCH=systemd|docker
#                        SSH=ssh  PYTHON=.venv/bin/python
#
# What lands where on the server:
#   /opt/esl-agent/app/                 the code (installed into /opt/esl-agent/.venv)
#   /opt/esl-agent/conf/policy.yaml     the dial policy the controller loads (policy.path)
#   /etc/esl-agent/agent.yaml           created from conf/agent.example.yaml once, then yours
#   /etc/freeswitch/...                 conf/freeswitch rendered from the policy, overlaid on the
#                                       stock tree (the path both Debian packages and our
#                                       docker-compose.yml use; never --delete)
#   /etc/freeswitch/secrets/            generated once on the server (0600), never copied
#   /etc/fail2ban/{filter.d,jail.d}/    the filter and jail
#   /etc/esl-agent/firewall/            ufw.sh and nftables.conf; the chosen one is applied
#   /etc/systemd/system/                esl-agent.service, esl-agent-digest.{service,timer}
# Then: reloadxml + reloadacl + profile rescan (restart when the event-socket secret is new),
# restart the controller, and `esl-agent verify-hardening` (green/red per check).
set -euo pipefail
cd "$(dirname "$0")/.."

HOST="${1:-${HOST:-}}"
DRY_RUN="${DRY_RUN:-0}"
DEPLOY_ROOT="${DEPLOY_ROOT:-}"
POLICY="${POLICY:-conf/policy.yaml}"
FIREWALL="${FIREWALL:-ufw}"
FREESWITCH="${FREESWITCH:-systemd}"
SSH="${SSH:-ssh}"
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

die() { echo "deploy: $*" >&2; exit 2; }
step() { echo "==> $*"; }
run() {
  echo "+ $*"
  if [ "$DRY_RUN" != 1 ]; then "$@"; fi
}

if [ -z "$HOST" ] && [ -z "$DEPLOY_ROOT" ]; then
  die "usage: make deploy HOST=user@host [DRY_RUN=1]  (or DEPLOY_ROOT=/dir for a local tree)"
fi
case "$FIREWALL" in ufw|nftables|none) ;; *) die "FIREWALL must be ufw, nftables or none" ;; esac
case "$FREESWITCH" in systemd|docker) ;; *) die "FREESWITCH must be systemd or docker" ;; esac
[ -f "$POLICY" ] || die "no policy file $POLICY"
case "$HOST" in -*|*[[:space:]\;\&\|\`\$]*) die "refusing odd HOST value" ;; esac

if [ -n "$DEPLOY_ROOT" ]; then
  target="local tree $DEPLOY_ROOT"
else
  target="$HOST"
fi
step "deploying esl-agent to $target (firewall: $FIREWALL, FreeSWITCH: $FREESWITCH, dry run: $DRY_RUN)"

umask 022
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/esl-agent-deploy.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
chmod 0755 "$STAGE"
RENDERED="$STAGE/.rendered"

step "render conf from $POLICY and lint it"
run "$PYTHON" -m esl_agent conf render --policy "$POLICY" --out "$RENDERED"
run "$PYTHON" -m esl_agent conf lint "$RENDERED/freeswitch"

step "stage the server tree"
run mkdir -p "$STAGE/opt/esl-agent/app" "$STAGE/opt/esl-agent/conf" "$STAGE/etc/freeswitch" \
  "$STAGE/etc/esl-agent/firewall" "$STAGE/etc/fail2ban/filter.d" "$STAGE/etc/fail2ban/jail.d" \
  "$STAGE/etc/systemd/system" "$STAGE/var/lib/esl-agent"
if [ "$DRY_RUN" = 1 ]; then
  echo "+ tar esl_agent setup.cfg pyproject.toml Makefile README.md conf/*.example.yaml | tar -x -C $STAGE/opt/esl-agent/app"
else
  app_files=(esl_agent setup.cfg pyproject.toml Makefile)
  [ -f README.md ] && app_files+=(README.md)
  for f in conf/*.example.yaml; do [ -f "$f" ] && app_files+=("$f"); done
  tar -cf - --exclude=__pycache__ --exclude='*.pyc' "${app_files[@]}" | tar -xf - -C "$STAGE/opt/esl-agent/app"
fi
run cp "$POLICY" "$STAGE/opt/esl-agent/conf/policy.yaml"
run cp -R "$RENDERED/freeswitch/." "$STAGE/etc/freeswitch/"
run cp "$RENDERED/firewall/ufw.sh" "$RENDERED/firewall/nftables.conf" "$STAGE/etc/esl-agent/firewall/"
run cp "$RENDERED/fail2ban/filter.d/freeswitch-esl-agent.conf" "$STAGE/etc/fail2ban/filter.d/"
run cp "$RENDERED/fail2ban/jail.d/freeswitch-esl-agent.conf" "$STAGE/etc/fail2ban/jail.d/"
run cp conf/systemd/esl-agent.service conf/systemd/esl-agent-digest.service \
  conf/systemd/esl-agent-digest.timer "$STAGE/etc/systemd/system/"
if [ "$FIREWALL" = nftables ]; then
  run mkdir -p "$STAGE/etc/nftables.d"
  run cp "$RENDERED/firewall/nftables.conf" "$STAGE/etc/nftables.d/esl-agent.nft"
fi

# ---------------------------------------------------------------------------------------------
# The script that runs on the server as root, after the files landed.
case "$FIREWALL" in
  ufw) firewall_cmd="sh /etc/esl-agent/firewall/ufw.sh" ;;
  nftables) firewall_cmd="nft -f /etc/nftables.d/esl-agent.nft" ;;
  none) firewall_cmd="echo 'firewall: left alone (FIREWALL=none)'" ;;
esac
verify_flags="--policy /opt/esl-agent/conf/policy.yaml --no-color"
[ "$FIREWALL" = ufw ] || verify_flags="$verify_flags --no-ufw"
[ "$FREESWITCH" = docker ] && verify_flags="$verify_flags --fs-cli /usr/local/sbin/esl-agent-fs-cli"
if [ "$FREESWITCH" = docker ]; then
  fs_cli="/usr/local/sbin/esl-agent-fs-cli"
  fs_restart="docker compose -f /opt/esl-agent/app/docker-compose.yml up -d --force-recreate freeswitch"
  fs_owner="root:root"
else
  fs_cli="fs_cli"
  fs_restart="systemctl restart freeswitch"
  fs_owner="freeswitch:freeswitch"
fi
POST="$STAGE/var/lib/esl-agent/post-install.sh"
post_install() {
cat <<EOF
#!/bin/sh
# Generated by scripts/deploy.sh; runs on the server as root after the files landed.
set -eu
echo "==> users and directories"
getent group esl-agent >/dev/null || groupadd --system esl-agent
id esl-agent >/dev/null 2>&1 || useradd --system --gid esl-agent --home-dir /opt/esl-agent --shell /usr/sbin/nologin esl-agent
if id freeswitch >/dev/null 2>&1; then usermod -aG esl-agent freeswitch; fi
usermod -aG adm esl-agent || true
install -d -o esl-agent -g esl-agent -m 0750 /opt/esl-agent/var
install -d -o root -g esl-agent -m 0750 /etc/esl-agent
[ -f /etc/esl-agent/agent.yaml ] || install -o root -g esl-agent -m 0640 /opt/esl-agent/app/conf/agent.example.yaml /etc/esl-agent/agent.yaml
[ -f /etc/esl-agent/env ] || install -o root -g esl-agent -m 0640 /dev/null /etc/esl-agent/env
echo "==> FreeSWITCH log directory: freeswitch.xml.fsxml there holds the expanded config, secrets included"
install -d /var/log/freeswitch
chmod o-rwx /var/log/freeswitch
if [ "$FREESWITCH" = docker ]; then
  chgrp esl-agent /var/log/freeswitch && chmod 0750 /var/log/freeswitch
elif getent group freeswitch >/dev/null; then
  # only the daily digest (not the controller) may read FreeSWITCH's log
  install -d /etc/systemd/system/esl-agent-digest.service.d
  printf '[Service]\nSupplementaryGroups=freeswitch\n' > /etc/systemd/system/esl-agent-digest.service.d/logs.conf
fi
echo "==> FreeSWITCH secrets (generated once, never printed)"
install -d -m 0700 /etc/freeswitch/secrets
new_esl_secret=0
for s in default_password esl_password; do
  if [ ! -s /etc/freeswitch/secrets/\$s ]; then
    (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \\n' > /etc/freeswitch/secrets/\$s)
    [ "\$s" = esl_password ] && new_esl_secret=1
  fi
done
chown -R $fs_owner /etc/freeswitch/secrets
chmod 0600 /etc/freeswitch/secrets/*
if [ "\$new_esl_secret" = 1 ] || [ ! -s /root/.fs_cli_conf ]; then
  (umask 077; printf '[default]\\npassword => %s\\n' "\$(cat /etc/freeswitch/secrets/esl_password)" > /root/.fs_cli_conf)
fi
if [ "$FREESWITCH" = docker ]; then
  # fs_cli inside the container, password read there from the secrets file (not on the host's command line)
  cat > /usr/local/sbin/esl-agent-fs-cli <<'FSCLI'
#!/bin/sh
exec docker compose -f /opt/esl-agent/app/docker-compose.yml exec -T freeswitch sh -c 'exec /usr/local/freeswitch/bin/fs_cli -p "\$(cat /etc/freeswitch/secrets/esl_password)" "\$@"' fs_cli "\$@"
FSCLI
  chmod 0755 /usr/local/sbin/esl-agent-fs-cli
fi
echo "==> controller venv"
[ -x /opt/esl-agent/.venv/bin/python ] || python3 -m venv /opt/esl-agent/.venv
/opt/esl-agent/.venv/bin/pip install -q --upgrade /opt/esl-agent/app
echo "==> systemd units"
systemctl daemon-reload
systemctl enable esl-agent.service esl-agent-digest.timer
echo "==> firewall ($FIREWALL)"
$firewall_cmd
echo "==> fail2ban"
fail2ban-client reload
echo "==> FreeSWITCH reload"
if [ "\$new_esl_secret" = 1 ]; then
  $fs_restart
else
  $fs_cli -x reloadxml
  $fs_cli -x reloadacl
  $fs_cli -x "sofia profile external rescan"
fi
echo "==> controller restart"
systemctl restart esl-agent.service
echo "==> verification"
/opt/esl-agent/.venv/bin/esl-agent verify-hardening $verify_flags
EOF
}
if [ "$DRY_RUN" = 1 ]; then
  echo "+ write $POST:"
  post_install | sed 's/^/    | /'
else
  post_install > "$POST"
  chmod 0700 "$POST"
fi
[ "$FREESWITCH" = docker ] && run cp docker-compose.yml "$STAGE/opt/esl-agent/app/"

# ---------------------------------------------------------------------------------------------
# Transfer: each subtree to its own place (never rsync onto / itself), overlay without --delete
# except for the code directory.
TREES="opt/esl-agent/app opt/esl-agent/conf etc/freeswitch etc/esl-agent/firewall etc/fail2ban/filter.d etc/fail2ban/jail.d etc/systemd/system var/lib/esl-agent"
[ "$FIREWALL" = nftables ] && TREES="$TREES etc/nftables.d"
if [ -n "$DEPLOY_ROOT" ]; then
  step "install into $DEPLOY_ROOT"
  for t in $TREES; do
    run mkdir -p "$DEPLOY_ROOT/$t"
    [ "$t" = opt/esl-agent/app ] && run rm -rf "$DEPLOY_ROOT/$t" && run mkdir -p "$DEPLOY_ROOT/$t"
    run cp -R "$STAGE/$t/." "$DEPLOY_ROOT/$t/"
  done
  step "server commands not run in a local tree: see $DEPLOY_ROOT/var/lib/esl-agent/post-install.sh"
else
  step "copy to $HOST"
  for t in $TREES; do
    delete=""
    [ "$t" = opt/esl-agent/app ] && delete="--delete"
    run rsync -rlt $delete --chmod=D0755,F0644 --chown=root:root --rsync-path="sudo mkdir -p /$t && sudo rsync" \
      -e "$SSH" "$STAGE/$t/" "$HOST:/$t/"
  done
  step "run the server steps on $HOST"
  run "$SSH" "$HOST" sudo sh /var/lib/esl-agent/post-install.sh
fi
step "done"
