"""Shared GStreamer webrtcbin WHIP/WHEP signalling: complete offer (ICE
gathering finished before the POST, no trickle), answer applied, DELETE at
the end. Also the JSON-line protocol the interop clients share:

  {"event": "ready"}            offer gathered; with --wait-go the client then
                                waits for a line on stdin before it POSTs
  {"event": "result", ...}      last line, the client's findings
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

Gst.init(None)


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}]", *a, file=sys.stderr, flush=True)


def ecdsa_pem():
    """A self-signed ECDSA P-256 certificate + key as one PEM string."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "30", "-subj", "/CN=gst-webrtc", "-keyout", f"{d}/k.pem",
                        "-out", f"{d}/c.pem"], check=True, capture_output=True)
        return open(f"{d}/c.pem").read() + open(f"{d}/k.pem").read()


def pem_fingerprint(pem):
    import hashlib
    import ssl
    cert = pem[:pem.index("-----END CERTIFICATE-----") + 25]
    return ":".join(f"{b:02X}" for b in hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert)).digest())


def want_ecdsa():
    """GStreamer's DTLS elements generate an RSA 2048 certificate by default;
    browsers use ECDSA P-256. GST_DTLS_RSA=1 keeps GStreamer's default."""
    return os.environ.get("GST_DTLS_RSA") != "1"


_PEM = None


def certificate_pem():
    global _PEM
    if _PEM is None:
        _PEM = ecdsa_pem()
        log("ECDSA certificate", pem_fingerprint(_PEM))
    return _PEM


def use_ecdsa_certificate(pipeline):
    """Give every dtlssrtpdec webrtcbin creates in `pipeline` one ECDSA
    certificate. It must happen as the element is added (before its DTLS
    connection is taken by the paired dtlssrtpenc), hence deep-element-added.
    negotiate() then writes the right a=fingerprint into the offer."""
    if not want_ecdsa():
        log("keeping GStreamer's default RSA DTLS certificate")
        return
    pem = certificate_pem()

    def added(_bin, _sub, element):
        f = element.get_factory()
        if f is not None and f.get_name() == "dtlssrtpdec":
            element.set_property("pem", pem)

    pipeline.connect("deep-element-added", added)
    it = pipeline.iterate_recurse()
    while True:
        ok, element = it.next()
        if ok != Gst.IteratorResult.OK:
            break
        added(None, None, element)


def fix_fingerprint(sdp, fingerprint):
    """webrtcbin hashes the whole PEM (certificate + private key) when it
    writes a=fingerprint for a certificate set through the "certificate"
    property, so the line is wrong; put the certificate's real SHA-256 in."""
    out = []
    for ln in sdp.splitlines():
        if ln.startswith("a=fingerprint:"):
            ln = f"a=fingerprint:sha-256 {fingerprint}"
        out.append(ln)
    return "\r\n".join(out) + "\r\n"


def post_sdp(url, sdp, timeout=10):
    req = urllib.request.Request(url, data=sdp.encode(), method="POST",
                                 headers={"Content-Type": "application/sdp"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), None


def delete(base_url, location):
    if not location:
        return None
    req = urllib.request.Request(urljoin(base_url, location), method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        log("DELETE failed:", e)
        return None


def watch_states(webrtc, state):
    """Record ICE / peer-connection state changes (logged to stderr)."""

    def on_ice(w, _p):
        s = w.get_property("ice-connection-state").value_nick
        state["ice_state"] = s
        log("ice-connection-state", s)

    def on_conn(w, _p):
        s = w.get_property("connection-state").value_nick
        state["connection_state"] = s
        if s == "connected" and "t_connected" not in state and "t_post" in state:
            state["connected_ms"] = round((time.monotonic() - state["t_post"]) * 1000, 1)
            state["t_connected"] = True
        log("connection-state", s)

    webrtc.connect("notify::ice-connection-state", on_ice)
    webrtc.connect("notify::connection-state", on_conn)


def negotiate(webrtc, url, loop, state, wait_go=False, on_answer=None):
    """Create the offer, wait for ICE gathering to complete, (optionally wait
    for "go" on stdin), POST it, apply the answer. Fills `state` in as it
    goes: t_post, status, location, answer, error."""
    lock = threading.Lock()

    def do_post():
        offer = webrtc.get_property("local-description").sdp.as_text()
        if "certificate_fingerprint" in state:
            offer = fix_fingerprint(offer, state["certificate_fingerprint"])
        state["offer"] = offer
        log("offer:\n" + offer)
        state["t_post"] = time.monotonic()
        status, body, location = post_sdp(url, offer)
        state.update(status=status, location=location)
        log("POST", url, "->", status, location)
        if status != 201:
            state["error"] = f"POST {url} -> {status}: {body.strip()[:300]}"
            log(state["error"])
            loop.quit()
            return False
        state["answer"] = body
        log("answer:\n" + body)
        ok, msg = GstSdp.SDPMessage.new_from_text(body)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        if on_answer:
            on_answer(state)
        return False

    def gathered():
        # On the main loop.
        emit({"event": "ready"})
        if not wait_go:
            do_post()
            return False

        def wait_stdin():
            line = sys.stdin.readline()
            log("stdin:", line.strip() or "<eof>")
            GLib.idle_add(do_post)

        threading.Thread(target=wait_stdin, daemon=True).start()
        return False

    def check(*_):
        if webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return True
        with lock:
            if state.get("gathered"):
                return False
            state["gathered"] = True
        GLib.idle_add(gathered)
        return False

    def on_offer(promise, _):
        reply = promise.get_reply()  # keep a reference while the offer is used
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            state["error"] = f"create-offer failed: {reply.to_string() if reply is not None else None}"
            log(state["error"])
            GLib.idle_add(loop.quit)
            return
        if want_ecdsa():
            state["certificate_fingerprint"] = pem_fingerprint(certificate_pem())
        webrtc.emit("set-local-description", offer, Gst.Promise.new())
        GLib.timeout_add(50, check)

    webrtc.connect("notify::ice-gathering-state", check)
    webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


def bus_errors(pipe, loop, state):
    def on_bus(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            state.setdefault("errors", []).append(str(err))
            log("ERROR", err, dbg)
            loop.quit()
        elif msg.type == Gst.MessageType.WARNING:
            err, dbg = msg.parse_warning()
            log("WARNING", err, dbg)

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_bus)
