#!/usr/bin/env bash
# Installs everything the interop suite needs on Debian 12, as root.
# Idempotent: apt runs only for missing packages, the venv and node_modules
# are reused when they already hold the right things.
#
#   tests/interop/setup.sh
#
# - Debian packages: GStreamer (webrtcbin, libnice, x264, libav), python3-gi
#   and the GIR typelibs, Chromium, iproute2, ffmpeg, openssl, node/npm.
# - tests/interop/.venv: a venv of Debian's /usr/bin/python3 with
#   --system-site-packages (so `gi` is visible) plus aiortc and pytest.
# - tests/interop/browser/node_modules: playwright-core (never downloads a
#   browser; the scripts use /usr/bin/chromium) and the medooze `whip-whep`
#   client library (served to the page by browser/whip_whep.mjs).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" != 0 ]; then echo "setup.sh: run as root" >&2; exit 1; fi

PKGS=(
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-nice gstreamer1.0-libav gstreamer1.0-tools
  python3 python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0
  python3-pytest python3-venv python3-pip
  chromium iproute2 ffmpeg openssl ca-certificates
)
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: Debian packages present"
fi

# Python: Debian's interpreter (it has gi) in a venv that also sees system site-packages.
VENV="$HERE/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import gi' 2>/dev/null; then
  rm -rf "$VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c 'import aiortc, av, pytest' 2>/dev/null; then
  "$VENV/bin/pip" install --disable-pip-version-check -q -r "$HERE/requirements.txt"
fi
"$VENV/bin/python" - <<'PY'
import gi, aiortc, av, pytest
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0")
from gi.repository import Gst, GstWebRTC
Gst.init(None)
for e in ("webrtcbin", "nicesrc", "dtlssrtpenc", "x264enc", "avdec_h264", "opusenc", "rtph264pay"):
    assert Gst.ElementFactory.find(e), f"GStreamer element {e} missing"
print("setup.sh: python ok: aiortc", aiortc.__version__, "av", av.__version__, "pytest", pytest.__version__,
      "GStreamer", Gst.version_string())
PY

# Node: playwright-core (it never downloads browsers by itself) and whip-whep.
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 20 ]; then
  echo "setup.sh: warning: node $(node --version) < 20; playwright-core wants >= 20" >&2
fi
if [ ! -f "$HERE/browser/node_modules/playwright-core/package.json" ] \
   || [ ! -f "$HERE/browser/node_modules/whip-whep/whip.js" ]; then
  (cd "$HERE/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
echo "setup.sh: playwright-core $(node -p "require('$HERE/browser/node_modules/playwright-core/package.json').version"), whip-whep $(node -p "require('$HERE/browser/node_modules/whip-whep/package.json').version"), $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?')"
