# Shared by scripts/demo.sh and scripts/test.sh: a project virtualenv and the web build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "… creating the virtualenv .venv" >&2
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
"$VPY" -m pip install -q --upgrade pip >/dev/null

install_python() {  # $1: extras, e.g. "" or "[test]"
  echo "… installing Python packages (citytwin$1)" >&2
  "$VPY" -m pip install -q -e ".$1"
  # JuPedSim's wheel pulls a 1.7 GB viewer (PySide6, VTK); the simulator itself needs only
  # numpy, shapely and deprecated, which the line above installed. See DOMAIN.md §5.
  "$VPY" -m pip install -q --no-deps "jupedsim==1.4.2"
}

build_web() {
  command -v npm >/dev/null || { echo "error: npm (Node.js >= 20) is needed to build the dashboard" >&2; exit 1; }
  echo "… building the dashboard (npm ci && npm run build in web/)" >&2
  npm --prefix web ci --no-audit --no-fund --loglevel=error
  npm --prefix web run build --silent
}
