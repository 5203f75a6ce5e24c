#!/usr/bin/env bash
# Build the TEST-ONLY stand-in interfaces into build/standin_interfaces/install.
# Usage: test/standin_interfaces/build.sh  (from anywhere; uses the repo's .venv)
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
OUT="$ROOT/build/standin_interfaces"
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
cd "$ROOT"
"$VENV/bin/colcon" --log-base "$OUT/log" build --base-paths "$ROOT/test/standin_interfaces" \
  --merge-install --install-base "$OUT/install" --build-base "$OUT/build" \
  --event-handlers console_direct- console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
