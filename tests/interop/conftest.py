"""Fixtures for the WHIP/WHEP interop suite.

Every test gets its own pair of network namespaces (netns.py) with the `sfu`
binary running in the server namespace and every client (GStreamer, aiortc,
Chromium) in the client namespace; both are torn down whatever happens.
Logs and results go to artifacts/ (results.jsonl collects the TTFF figures).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (AIORTC_CHECK, ARTIFACTS, BROWSER_DIR, GI_CHECK, Client, Sfu,  # noqa: E402
                     pick_python)
from netns import NetnsPair  # noqa: E402


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the interop suite creates network namespaces: run it as root")


@pytest.fixture(scope="session")
def gst_python():
    py = os.environ.get("GST_PYTHON") or pick_python(GI_CHECK)
    if not py:
        pytest.fail("no Python with GStreamer webrtcbin/nice/x264/libav (python3-gi, gir1.2-gst-plugins-bad-1.0, "
                    "gstreamer1.0-*): run tests/interop/setup.sh")
    return py


@pytest.fixture(scope="session")
def aiortc_python():
    py = os.environ.get("AIORTC_PYTHON") or pick_python(AIORTC_CHECK)
    if not py:
        pytest.fail("no Python with aiortc: run tests/interop/setup.sh")
    return py


@pytest.fixture(scope="session")
def node_bin():
    node = shutil.which("node")
    if not node or not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail("node or tests/interop/browser/node_modules/playwright-core missing: run tests/interop/setup.sh")
    if not os.path.exists(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")):
        pytest.fail("/usr/bin/chromium missing: run tests/interop/setup.sh")
    return node


@pytest.fixture
def test_dir(request):
    d = ARTIFACTS / request.node.name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


@pytest.fixture
def net():
    with NetnsPair() as n:
        yield n


@pytest.fixture
def sfu(net, test_dir):
    s = Sfu(net, test_dir / "sfu.log", extra=shlex.split(os.environ.get("SFU_EXTRA_ARGS", "")))
    yield s
    died = s.proc.poll() is not None
    s.stop()
    text = open(s.log_path, errors="replace").read()
    if died:
        pytest.fail(f"sfu exited during the test (code {s.proc.returncode}); see {s.log_path}")
    if "panicked at" in text:
        pytest.fail(f"sfu panicked; see {s.log_path}")


@pytest.fixture
def clients(net, test_dir):
    """Factory clients(name, argv) -> Client in the client namespace
    (`server_side=True`: in the server namespace); all are stopped at
    teardown (before the namespaces go)."""
    started: list[Client] = []

    def start(name, argv, env=None, cwd=None, server_side=False):
        c = Client(net, name, argv, test_dir, env=env, cwd=cwd, server_side=server_side)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


@pytest.fixture(autouse=True)
def _no_leftover_namespaces():
    yield
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mine = [ln.split()[0] for ln in out.splitlines() if ln.startswith(f"sfut-srv-{os.getpid()}-")
            or ln.startswith(f"sfut-cli-{os.getpid()}-")]
    assert not mine, f"namespaces left behind: {mine}"


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# `timeout` (run.sh) or CI sends SIGTERM: turn it into KeyboardInterrupt so
# pytest still runs the fixture finalizers that remove the namespaces.
import signal  # noqa: E402

signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
