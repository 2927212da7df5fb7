#!/bin/sh
# Rendered by `esl-agent conf render` from conf/policy.yaml. Do not edit: edit the policy.
# SIP only from the provider networks, RTP open, event socket and controller never exposed.
set -eu
ufw default deny incoming
ufw default allow outgoing
ufw allow OpenSSH
ufw allow proto udp from 192.0.2.0/24 to any port 5060,5061,5080,5081 comment 'esl-agent SIP provider'
ufw allow proto tcp from 192.0.2.0/24 to any port 5060,5061,5080,5081 comment 'esl-agent SIP provider'
ufw allow proto udp from 198.51.100.16/28 to any port 5060,5061,5080,5081 comment 'esl-agent SIP provider'
ufw allow proto tcp from 198.51.100.16/28 to any port 5060,5061,5080,5081 comment 'esl-agent SIP provider'
ufw allow proto udp to any port 16384:32768 comment 'esl-agent RTP'
ufw deny proto tcp to any port 8021 comment 'esl-agent event socket never exposed'
ufw deny proto tcp to any port 8084 comment 'esl-agent controller never exposed'
ufw --force enable
