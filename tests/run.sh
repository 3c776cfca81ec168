#!/usr/bin/env bash
# The project's ONE test command (see README): installs every system package
# the tests need on Debian 12 (run as root), builds once in release mode, and
# runs everything: lint, unit tests, end-to-end tests, interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive CARGO_TERM_COLOR=never

echo "== installing system packages"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  ca-certificates build-essential cmake perl pkg-config libssl-dev iproute2 ffmpeg \
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice \
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 \
  gir1.2-gst-rtsp-server-1.0 coturn \
  chromium >/dev/null
# Node.js 20 + npm come with the machine image; install Debian's only if absent.
command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
if [ -x tests/interop/setup.sh ] || [ -f tests/interop/setup.sh ]; then
  bash tests/interop/setup.sh
fi

echo "== lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings

echo "== build"
cargo build --workspace --release

echo "== unit and end-to-end tests"
cargo test --workspace --release

echo "== fuzz smoke (10 s over every parser; see README Test)"
cargo run --release -q -p fuzz -- --seconds 10

if [ -f tests/interop/run.sh ]; then
  echo "== interop tests (Chromium, GStreamer webrtcbin, aiortc)"
  SFU_BIN="$PWD/target/release/sfu" bash tests/interop/run.sh
fi
echo "== all tests passed"
