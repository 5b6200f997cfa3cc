#!/usr/bin/env bash
# Install test dependencies and run the whole test suite (PostgreSQL, MQTT and browser tests
# included; on a machine without those services they are skipped, under CI=true they must run).
source "$(dirname "$0")/_env.sh"
install_python "[test]"
build_web
exec "$ROOT/.venv/bin/python" -m pytest "$@"
