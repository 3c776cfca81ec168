#!/usr/bin/env bash
# Instructions per forwarded packet (SFU side: rewrite + str0m write_rtp +
# poll_output + SRTP seal), counted by callgrind on a fixed in-memory scenario
# (benches/callgrind.rs). Repeatable to ~0.1 %: a regression number for CI
# where wall-clock timings are noise. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p benches --bin forward-callgrind
out=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  --toggle-collect='forward_callgrind::forward_frame' \
  target/release/forward-callgrind >"$out/stdout" 2>"$out/stderr"
packets=$(sed -nE 's/^packets=([0-9]+).*/\1/p' "$out/stdout")
ir=$(sed -nE 's/^summary: ([0-9]+).*/\1/p' "$out/cg.out")
[ -n "$ir" ] || ir=$(sed -nE 's/^totals: ([0-9]+).*/\1/p' "$out/cg.out")
echo "packets forwarded: $packets"
echo "instructions in forward_frame: $ir"
echo "instructions per forwarded packet: $(( ir / packets ))"
if [ "${1:-}" = "--top" ]; then
  callgrind_annotate --inclusive=no "$out/cg.out" 2>/dev/null | sed -n '1,40p'
fi
rm -rf "$out"
