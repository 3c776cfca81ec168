"""Test-side machinery for the interop suite: the sfu process, client
processes speaking the JSON-line protocol, argv builders for every client
script, and the results file."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import subprocess
import sys
import threading
import time

import pytest

from netns import NetnsPair

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ARTIFACTS = HERE / "artifacts"
RESULTS = ARTIFACTS / "results.jsonl"
VENV_PY = HERE / ".venv" / "bin" / "python"
BROWSER_DIR = HERE / "browser"

ANSI = re.compile(r"\x1b\[[0-9;]*m")

# The acceptance criterion: every viewer decodes video within 1 s of its POST.
TTFF_LIMIT_MS = 1000.0


def sfu_binary():
    return os.environ.get("SFU_BIN", str(ROOT / "target" / "release" / "sfu"))


def our_binary(name):
    """target/release/<name> (whip-ingest, load-test), or $<NAME>_BIN; fails the test if missing."""
    path = os.environ.get(name.upper().replace("-", "_") + "_BIN", str(ROOT / "target" / "release" / name))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: cargo build --release -p {name}")
    return path


def _has_modules(py, code):
    try:
        return subprocess.run([str(py), "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pick_python(code):
    """The first of this interpreter, the suite's venv, Debian's python3 that runs `code`."""
    for py in (sys.executable, VENV_PY, pathlib.Path("/usr/bin/python3")):
        if pathlib.Path(py).exists() and _has_modules(py, code):
            return str(py)
    return None


GI_CHECK = ("import gi; gi.require_version('Gst','1.0'); gi.require_version('GstWebRTC','1.0'); "
            "from gi.repository import Gst, GstWebRTC; Gst.init(None); "
            "assert Gst.ElementFactory.find('webrtcbin') and Gst.ElementFactory.find('nicesrc') "
            "and Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('avdec_h264')")
AIORTC_CHECK = "import aiortc, av"


def record(test, **fields):
    """Append one JSON line to artifacts/results.jsonl."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "test": test, **fields}) + "\n")


# -- argv builders ----------------------------------------------------------
def gst_publish_argv(py, url, duration, width=640, height=360, extra=()):
    return [py, str(HERE / "gst_publish.py"), url, "--duration", str(duration),
            "--width", str(width), "--height", str(height), *extra]


def gst_play_argv(py, url, duration, wait_go=False, extra=()):
    return [py, str(HERE / "gst_play.py"), url, "--duration", str(duration),
            *(["--wait-go"] if wait_go else []), *extra]


def aiortc_play_argv(py, url, duration, wait_go=False, extra=()):
    return [py, str(HERE / "aiortc_play.py"), url, "--duration", str(duration),
            *(["--wait-go"] if wait_go else []), *extra]


def aiortc_publish_argv(py, url, duration, width=640, height=360, extra=()):
    return [py, str(HERE / "aiortc_publish.py"), url, "--duration", str(duration),
            "--width", str(width), "--height", str(height), *extra]


def chromium_play_argv(node, base, stream, duration, wait_go=False, extra=()):
    return [node, str(BROWSER_DIR / "play.mjs"), "--base", base, "--stream", stream, "--duration", str(duration),
            *(["--wait-go"] if wait_go else []), *extra]


def chromium_publish_argv(node, base, stream, duration, extra=()):
    return [node, str(BROWSER_DIR / "publish.mjs"), "--base", base, "--stream", stream,
            "--duration", str(duration), *extra]


def ttff(res):
    """POST → first decoded frame (ms) from any client's result line."""
    v = res.get("ttff_ms") if res.get("ttff_ms") is not None else res.get("ttffMs")
    return float(v) if v is not None else None


class Client:
    """One client process in the client namespace (`server_side`: in the
    server namespace, for a server under test that is not ours). Its stdout
    is read as JSON lines (events); its stderr goes to an artifact log file."""

    def __init__(self, net: NetnsPair, name: str, argv, log_dir: pathlib.Path, env=None, cwd=None,
                 server_side=False):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.events: list[dict] = []
        self.raw: list[str] = []
        self._q: queue.Queue = queue.Queue()
        popen = net.popen_srv if server_side else net.popen_cli
        self.proc = popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._log, text=True, env=env, cwd=cwd)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            self.raw.append(line)
            self._log.write(f"[stdout] {line}\n")
            self._log.flush()
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                self.events.append(ev)
                self._q.put(ev)
        self._q.put(None)

    def wait_event(self, name, timeout):
        """The first event `name`; None on timeout or exit."""
        for ev in self.events:
            if ev.get("event") == name:
                return ev
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                ev = self._q.get(timeout=left)
            except queue.Empty:
                return None
            if ev is None:
                self._q.put(None)
                return None
            if ev.get("event") == name:
                return ev

    def go(self):
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def finish(self, timeout) -> dict:
        """Wait for exit; the result event (with returncode) or a stub."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._t.join(5)
        res = next((e for e in reversed(self.events) if e.get("event") == "result"), None)
        res = dict(res or {"ok": False, "error": f"{self.name}: no result line (see {self.log_path})"})
        res["returncode"] = self.proc.returncode
        res["log"] = str(self.log_path)
        return res

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log_tail(self, n=40):
        try:
            return "".join(open(self.log_path).readlines()[-n:])
        except OSError:
            return ""


class Sfu:
    """The sfu binary in the server namespace, reachable at self.base from
    the client namespace."""

    def __init__(self, net: NetnsPair, log_path: pathlib.Path, extra=()):
        binary = sfu_binary()
        if not os.access(binary, os.X_OK):
            pytest.fail(f"sfu binary {binary} not found: cargo build --release -p sfu (or set SFU_BIN)")
        self.net = net
        self.base = f"http://{net.srv_ip}:8080"
        self.log_path = log_path
        self._log = open(log_path, "w")
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info,sfu=debug"), "NO_COLOR": "1"}
        self.argv = [binary, "--http", f"{net.srv_ip}:8080", "--udp", f"{net.srv_ip}:8189", *extra]
        self.proc = net.popen_srv(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 15
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"sfu exited at start with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, _ = net.http("GET", f"{self.base}/api/streams", timeout=1)
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"sfu not answering GET /api/streams within 15 s:\n{self.log_tail()}")
            time.sleep(0.1)

    def url(self, kind, stream):
        return f"{self.base}/{kind}/{stream}"

    def streams(self):
        return self.net.get_json(f"{self.base}/api/streams")

    def stream(self, name):
        return next((s for s in self.streams() if s.get("name") == name), None)

    def wait_live(self, name, timeout=15, need_bitrate=True):
        """Wait until /api/streams shows `name` with a live publisher (and
        media flowing); returns that entry."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sfu died (exit {self.proc.returncode}):\n{self.log_tail()}")
            try:
                last = self.stream(name)
            except (OSError, RuntimeError, ValueError):
                last = None
            if last and last.get("publisher") == "live" and (not need_bitrate or last.get("bitrate_in_bps", 0) > 0):
                return last
            time.sleep(0.2)
        pytest.fail(f"stream {name!r} not live within {timeout} s; last /api/streams entry: {last}\n"
                    f"sfu log tail:\n{self.log_tail()}")

    def log_tail(self, n=60):
        try:
            self._log.flush()
            return ANSI.sub("", "".join(open(self.log_path, errors="replace").readlines()[-n:]))
        except (OSError, ValueError):
            return ""

    def stop(self):
        alive = self.proc.poll() is None
        if alive:
            self.proc.terminate()  # graceful: BYE + DTLS close, exit 0 within 3 s
            try:
                self.proc.wait(timeout=6)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return alive


