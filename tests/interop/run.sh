#!/usr/bin/env bash
# Runs the WHIP/WHEP interop suite (as root: it creates network namespaces).
#
#   tests/interop/run.sh [--setup] [pytest args...]
#
# --setup   run setup.sh first (Debian packages, venv with aiortc, playwright-core)
# SFU_BIN   server binary (default: target/release/sfu; build it with cargo build --release -p sfu)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [ "${1:-}" = "--setup" ]; then
  shift
  "$HERE/setup.sh"
fi
PY="$HERE/.venv/bin/python"
if [ ! -x "$PY" ]; then
  echo "run.sh: $PY missing; run tests/interop/run.sh --setup (or setup.sh)" >&2
  exit 1
fi
export SFU_BIN="${SFU_BIN:-$ROOT/target/release/sfu}"
if [ ! -x "$SFU_BIN" ]; then
  echo "run.sh: $SFU_BIN missing: cd $ROOT && cargo build --release -p sfu" >&2
  exit 1
fi
cd "$ROOT"
START="$(date +%Y-%m-%dT%H:%M:%S)"
rc=0
timeout --kill-after=10 600 "$PY" -m pytest -v -p no:cacheprovider "$HERE" "$@" || rc=$?
echo
echo "POST -> first decoded frame (ms), from tests/interop/artifacts/results.jsonl:"
"$PY" "$HERE/summarize.py" "$START" || true
exit $rc
