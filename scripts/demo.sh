#!/usr/bin/env bash
# Install everything (Python packages, the web build) and start the demo twin at :8000.
source "$(dirname "$0")/_env.sh"
install_python ""
build_web
exec "$ROOT/.venv/bin/citytwin" demo "$@"
