"""Test-made network namespaces for the interop suite.

A server namespace and a client namespace joined by one veth pair
(10.99.N.1 <-> 10.99.N.2), both with `lo` up, IPv6 off and no default route:
nothing sent inside them can leave the pair. libnice and aioice skip loopback
and Chromium would expose the machine's real interface addresses, so every
interop peer runs inside these namespaces. Everything is removed on close,
including stale pairs left by a test run that was killed.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count(1)
NAME_RE = re.compile(r"^sfut-(?:srv|cli)-(\d+)-\d+$")


def sh(*args, check=True, timeout=15):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Delete sfut-* namespaces whose creating test process is gone."""
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NAME_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            sh("ip", "netns", "del", name, check=False)


def in_netns(ns: str, fn, *args, **kw):
    """Run fn(*args) on a fresh thread that has joined network namespace ns.

    Only that thread changes namespace (setns is per thread), so sockets it
    opens live in ns; the rest of the test process stays where it was."""
    box = {}

    def run():
        try:
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({ns}) failed")
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _http(method, url, body=None, headers=None, timeout=5.0):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


class NetnsPair:
    def __init__(self):
        k = next(_counter)
        pid = os.getpid()
        self.srv = f"sfut-srv-{pid}-{k}"
        self.cli = f"sfut-cli-{pid}-{k}"
        self.vs, self.vc = f"vs{pid}x{k}"[:15], f"vc{pid}x{k}"[:15]
        n = (pid * 7 + k) % 200 + 20
        self.srv_ip, self.cli_ip = f"10.99.{n}.1", f"10.99.{n}.2"
        self._up = False

    def __enter__(self):
        sweep_stale()
        try:
            sh("ip", "netns", "add", self.srv)
            sh("ip", "netns", "add", self.cli)
            sh("ip", "link", "add", self.vs, "type", "veth", "peer", "name", self.vc)
            sh("ip", "link", "set", self.vs, "netns", self.srv)
            sh("ip", "link", "set", self.vc, "netns", self.cli)
            for ns, dev, ip in ((self.srv, self.vs, self.srv_ip), (self.cli, self.vc, self.cli_ip)):
                for key in ("all", "default", "lo"):
                    sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1",
                       check=False)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
            self._up = True
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def pids(self, ns):
        out = sh("ip", "netns", "pids", ns, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def close(self):
        """Kill what still runs inside the pair (all started by this test), delete it all."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [p for ns in (self.srv, self.cli) for p in self.pids(ns)]
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 3
            while time.time() < deadline and any(_pid_alive(p) for p in left):
                time.sleep(0.05)
        for ns in (self.srv, self.cli):
            sh("ip", "netns", "del", ns, check=False)
        # A veth left in the root namespace if setup failed half way.
        for dev in (self.vs, self.vc):
            if sh("ip", "link", "show", dev, check=False).returncode == 0:
                sh("ip", "link", "del", dev, check=False)
        self._up = False

    # -- processes -------------------------------------------------------
    def cmd(self, ns, args):
        return ["ip", "netns", "exec", ns, *args]

    def popen_srv(self, args, **kw):
        return subprocess.Popen(self.cmd(self.srv, args), **kw)

    def popen_cli(self, args, **kw):
        return subprocess.Popen(self.cmd(self.cli, args), **kw)

    # -- HTTP from the client namespace ----------------------------------
    def http(self, method, url, body=None, headers=None, timeout=5.0):
        """(status, headers, text) of a request sent from the client namespace."""
        if isinstance(body, str):
            body = body.encode()
        return in_netns(self.cli, _http, method, url, body, headers, timeout)

    def get_json(self, url, timeout=5.0):
        status, _, text = self.http("GET", url, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {url} -> {status}: {text[:200]}")
        return json.loads(text)
