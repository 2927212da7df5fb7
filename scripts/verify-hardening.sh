#!/bin/sh
# Checks the hardening of a deployed box (ACLs, gateway, firewall sources, event socket on loopback).
exec "$(dirname "$0")/../.venv/bin/esl-agent" verify-hardening "$@"
