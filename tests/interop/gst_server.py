"""An independent WHIP and WHEP server made of GStreamer's webrtcbin, with
webrtcbin's default DTLS certificate (RSA 2048, as GStreamer-based servers
have): the server our own clients (whip-ingest, load-test) are tested
against, so they are not only ever tested against our own server.

usage: gst_server.py --listen IP:PORT [--duration S] [--auto-transceivers]

- POST /whip/<name> (application/sdp offer, sendonly): a webrtcbin answers
  recvonly and decodes what it receives (decodebin), counting video frames
  and audio buffers.
- POST /whep/<name> (offer recvonly): a webrtcbin answers sendonly with a
  live videotestsrc, H.264 constrained baseline 320x240 at 30 fps (x264,
  keyframe every 30 frames).
- DELETE on the Location ends that session.

Answers are complete (ICE gathering finished before the 201; no trickle).
Prints {"event":"ready"} once listening, {"event":"session", ...} per POST,
and on SIGTERM/SIGINT (or after --duration) {"event":"result","sessions":
[...]} with each session's connection state and decoded frame count."""

import argparse
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from whip_gst import GLib, Gst, GstSdp, GstWebRTC, emit, log

from gi.repository import GObject  # noqa: E402  (after whip_gst's gi.require_version)

ap = argparse.ArgumentParser()
ap.add_argument("--listen", required=True, help="IP:PORT")
ap.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until SIGTERM/SIGINT")
ap.add_argument("--auto-transceivers", action="store_true",
                help="WHIP: let webrtcbin create the receive transceivers itself (its answer then has H.264 "
                     "without profile-level-id)")
args = ap.parse_args()
host, port = args.listen.rsplit(":", 1)

for name in ("decodebin", "rtph264depay", "h264parse", "avdec_h264", "fakesink", "x264enc", "rtph264pay"):
    f = Gst.ElementFactory.find(name)
    if f is not None:
        f.load()
# See gst_play.py: build the private pad class on the main thread first
# (it is registered with webrtcbin's element class).
Gst.ElementFactory.make("webrtcbin")
GObject.new(GObject.type_from_name("GstWebRTCBinSrcPad"), direction=Gst.PadDirection.SRC, name="warm-up")

loop = GLib.MainLoop()
sessions = {}
lock = threading.Lock()
counter = iter(range(1, 1_000_000))

SEND = ("videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! "
        "videoconvert ! x264enc tune=zerolatency bframes=0 key-int-max=30 speed-preset=ultrafast bitrate=500 ! "
        "video/x-h264,profile=constrained-baseline ! rtph264pay name=pay config-interval=-1 pt=96 aggregate-mode=zero-latency ! "
        "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! w. ")


class Session:
    def __init__(self, sid, kind, offer_text):
        self.sid, self.kind = sid, kind
        self.frames = 0
        self.audio_buffers = 0
        self.sent_buffers = 0
        self.state = "new"
        self.answer = None
        self.error = None
        self.done = threading.Event()
        if kind == "whep":
            self.pipe = Gst.parse_launch(f"webrtcbin name=w bundle-policy=max-bundle {SEND}")
            self.webrtc = self.pipe.get_by_name("w")
            self.pipe.get_by_name("pay").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._sent)
        else:
            self.pipe = Gst.Pipeline.new(f"s{sid}")
            self.webrtc = Gst.ElementFactory.make("webrtcbin", "w")
            self.webrtc.set_property("bundle-policy", "max-bundle")
            self.pipe.add(self.webrtc)
            self.webrtc.connect("pad-added", self._on_pad)
        self.webrtc.connect("notify::connection-state", self._on_state)
        self.dtls = []
        self.pipe.connect("deep-element-added", self._on_element)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        self.pipe.set_state(Gst.State.PLAYING)
        ok, msg = GstSdp.SDPMessage.new_from_text(offer_text)
        if ok != GstSdp.SDPResult.OK:
            self._fail("offer is not SDP")
            return
        if kind == "whep":
            # The payloader's sink pad gets caps once the encoder runs; the
            # transceiver needs them before the offer is applied.
            GLib.timeout_add(20, self._when_caps, msg, time.monotonic())
        else:
            if not args.auto_transceivers:
                self._receive_transceivers(offer_text)
            self._apply(msg)

    def _receive_transceivers(self, offer_text):
        """One recvonly transceiver per offered m-line, with the offer's
        H.264/VP8/Opus payload types and their fmtp as caps. A transceiver
        webrtcbin creates itself answers H.264 without profile-level-id,
        which a sender may take as Baseline level 1.0 (RFC 6184 §8.1) and
        so as no match for what it offered."""
        fmtp = {}
        for ln in offer_text.splitlines():
            if ln.startswith("a=fmtp:"):
                pt, params = ln[len("a=fmtp:"):].split(" ", 1)
                fmtp[pt] = "".join(f",{k.strip()}=(string){v.strip()}"
                                   for k, v in (p.split("=", 1) for p in params.split(";") if "=" in p))
        kind = None
        per_mline = []
        for ln in offer_text.splitlines():
            if ln.startswith("m="):
                kind = ln[2:].split()[0]
                per_mline.append((kind, []))
            elif ln.startswith("a=rtpmap:") and per_mline:
                pt, enc = ln[len("a=rtpmap:"):].split(" ", 1)
                name, clock = enc.split("/")[:2]
                if name.upper() in ("H264", "VP8", "OPUS"):
                    fb = (",rtcp-fb-nack=(boolean)true,rtcp-fb-nack-pli=(boolean)true"
                          if kind == "video" else "")
                    per_mline[-1][1].append(f"application/x-rtp,media={kind},encoding-name={name.upper()},"
                                            f"clock-rate={clock},payload={pt}{fmtp.get(pt, '')}{fb}")
        for kind, caps in per_mline:
            if caps:
                t = self.webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                                     Gst.Caps.from_string(";".join(caps)))
                if kind == "video":
                    t.set_property("do-nack", True)

    def _sent(self, _pad, _info):
        self.sent_buffers += 1
        return Gst.PadProbeReturn.OK

    def _when_caps(self, msg, t0):
        pads = list(self.webrtc.sinkpads)
        if (not pads or pads[0].get_current_caps() is None) and time.monotonic() - t0 < 5:
            return True
        t = self.webrtc.emit("get-transceiver", 0)
        if t is not None:
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        self._apply(msg)
        return False

    def _apply(self, msg):
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg)
        self.webrtc.emit("set-remote-description", desc,
                         Gst.Promise.new_with_change_func(self._remote_set, None))

    def _remote_set(self, promise, _):
        promise.wait()
        self.webrtc.emit("create-answer", None, Gst.Promise.new_with_change_func(self._on_answer, None))

    def _on_answer(self, promise, _):
        reply = promise.get_reply()
        answer = reply.get_value("answer") if reply is not None and reply.has_field("answer") else None
        if answer is None:
            self._fail(f"create-answer failed: {reply.to_string() if reply is not None else None}")
            return
        self.webrtc.emit("set-local-description", answer, Gst.Promise.new())
        GLib.timeout_add(20, self._gathered, time.monotonic())

    def _gathered(self, t0):
        if (self.webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE
                and time.monotonic() - t0 < 5):
            return True
        self.answer = self.webrtc.get_property("local-description").sdp.as_text()
        log(f"session {self.sid} ({self.kind}) answer:\n{self.answer}")
        self.done.set()
        return False

    def _fail(self, why):
        self.error = why
        log(f"session {self.sid}: {why}")
        self.done.set()

    def _on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        log(f"session {self.sid} ERROR {err} {dbg}")
        self.error = self.error or str(err)

    def _on_element(self, _bin, _sub, element):
        f = element.get_factory()
        if f is not None and f.get_name() == "dtlssrtpdec":
            self.dtls.append(element)

    def certificate_key(self):
        """"rsa" or "ec": the key type of this session's DTLS certificate."""
        for e in self.dtls:
            pem = e.get_property("pem") or ""
            if "BEGIN CERTIFICATE" in pem:
                out = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, text=True,
                                     capture_output=True).stdout
                return "rsa" if "rsaEncryption" in out else "ec" if "id-ecPublicKey" in out else "other"
        return None

    def _on_state(self, w, _p):
        self.state = w.get_property("connection-state").value_nick
        log(f"session {self.sid} connection-state {self.state}")

    def _on_pad(self, _w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        dec = Gst.ElementFactory.make("decodebin")
        dec.connect("pad-added", self._on_decoded_pad)
        self.pipe.add(dec)
        dec.sync_state_with_parent()
        r = pad.link(dec.get_static_pad("sink"))
        log(f"session {self.sid}: webrtcbin pad {pad.get_name()} -> decodebin: {r.value_nick}")

    def _on_decoded_pad(self, _dbin, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        video = caps.get_structure(0).get_name().startswith("video")
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        sink.set_property("async", False)
        sink.set_property("signal-handoffs", True)
        sink.connect("handoff", self._on_frame if video else self._on_audio)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        r = pad.link(sink.get_static_pad("sink"))
        log(f"session {self.sid}: decoded {caps.get_structure(0).get_name()} -> fakesink: {r.value_nick}")

    def _on_frame(self, *_):
        if self.frames == 0:
            log(f"session {self.sid}: first decoded frame")
        self.frames += 1

    def _on_audio(self, *_):
        self.audio_buffers += 1

    def summary(self):
        return {"id": self.sid, "kind": self.kind, "connection_state": self.state, "frames_decoded": self.frames,
                "audio_buffers_decoded": self.audio_buffers,
                "rtp_buffers_sent": self.sent_buffers, "error": self.error,
                "certificate_key": self.certificate_key()}

    def stop(self):
        self.pipe.set_state(Gst.State.NULL)


def on_main(fn, *a):
    """Run fn(*a) on the GLib main loop and return its value."""
    box, ev = {}, threading.Event()

    def run():
        try:
            box["v"] = fn(*a)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            box["e"] = e
        ev.set()
        return False

    GLib.idle_add(run)
    ev.wait(10)
    if "e" in box:
        raise box["e"]
    return box.get("v")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *a):
        log("http", fmt % a)

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        if len(parts) != 2 or parts[0] not in ("whip", "whep"):
            return self._send(404)
        if not (self.headers.get("Content-Type") or "").startswith("application/sdp"):
            return self._send(415)
        sid = next(counter)
        s = on_main(Session, sid, parts[0], body)
        with lock:
            sessions[sid] = s
        s.done.wait(15)
        emit({"event": "session", "id": sid, "kind": parts[0], "answered": s.answer is not None, "error": s.error})
        if s.answer is None:
            return self._send(500 if s.error is None else 400, (s.error or "no answer").encode())
        self._send(201, s.answer.encode(), [("Content-Type", "application/sdp"),
                                           ("Location", f"/session/{sid}"), ("ETag", f'"{sid}"')])

    def do_PATCH(self):
        self._send(405 if not self.path.startswith("/session/") else 204)

    def do_DELETE(self):
        try:
            sid = int(self.path.rsplit("/", 1)[-1])
        except ValueError:
            return self._send(404)
        with lock:
            s = sessions.get(sid)
        if s is None:
            return self._send(404)
        s.deleted = True
        on_main(s.stop)
        self._send(200)


server = ThreadingHTTPServer((host, int(port)), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
for sig in (signal.SIGTERM, signal.SIGINT):
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])
if args.duration > 0:
    GLib.timeout_add(int(args.duration * 1000), loop.quit)
emit({"event": "ready", "listen": args.listen})
loop.run()
server.shutdown()
with lock:
    out = [s.summary() | {"deleted": getattr(s, "deleted", False)} for s in sessions.values()]
for s in sessions.values():
    s.stop()
emit({"event": "result", "ok": True, "sessions": out})
