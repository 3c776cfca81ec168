"""GStreamer webrtcbin WHIP publisher: H.264 (x264, constrained baseline) +
Opus test signals, sendonly, complete offer (no trickle).

usage: gst_publish.py WHIP_URL [--duration S (0: until Ctrl-C)] [--width W --height H] [--no-audio] [--no-video]

Prints {"event":"live"} once the peer connection is connected and a final
{"event":"result", ...} line; exits non-zero if the POST was refused or the
connection never came up."""

import argparse
import time

from whip_gst import (GLib, Gst, GstWebRTC, bus_errors, delete, emit, log, negotiate,
                      use_ecdsa_certificate, watch_states)

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("--duration", type=float, default=0.0, help="seconds to publish; 0 = until interrupted")
ap.add_argument("--width", type=int, default=640)
ap.add_argument("--height", type=int, default=360)
ap.add_argument("--no-audio", action="store_true")
ap.add_argument("--bundle-policy", default="max-bundle", choices=["max-bundle", "max-compat", "balanced"])
ap.add_argument("--no-video", action="store_true")
ap.add_argument("--connect-timeout", type=float, default=15.0)
args = ap.parse_args()

desc = f"webrtcbin name=w bundle-policy={args.bundle_policy} "
if not args.no_video:
    desc += (
        f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},height={args.height},framerate=30/1 ! "
        "videoconvert ! x264enc tune=zerolatency bframes=0 key-int-max=60 speed-preset=ultrafast ! "
        "video/x-h264,profile=constrained-baseline ! "
        "rtph264pay config-interval=-1 pt=96 aggregate-mode=zero-latency ! "
        "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! w. ")
if not args.no_audio:
    desc += (
        "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 ! "
        "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w. ")
pipe = Gst.parse_launch(desc)
webrtc = pipe.get_by_name("w")
use_ecdsa_certificate(pipe)
loop = GLib.MainLoop()
st = {}
watch_states(webrtc, st)
bus_errors(pipe, loop, st)
n_pads = (0 if args.no_video else 1) + (0 if args.no_audio else 1)
t_start = time.monotonic()


def sink_caps_ready():
    pads = [p for p in webrtc.sinkpads]
    return len(pads) >= n_pads and all(p.get_current_caps() is not None for p in pads)


def begin():
    if not sink_caps_ready() and time.monotonic() - t_start < 5:
        return True
    i = 0
    while True:
        t = webrtc.emit("get-transceiver", i)
        if t is None:
            break
        t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        i += 1
    negotiate(webrtc, args.url, loop, st)
    return False


def check_live():
    if st.get("connection_state") == "connected":
        if not st.get("live_emitted"):
            st["live_emitted"] = True
            emit({"event": "live", "connected_ms": st.get("connected_ms"), "location": st.get("location")})
            log("live; location", st.get("location"))
        return True
    if time.monotonic() - t_start > args.connect_timeout:
        log("connection did not come up within", args.connect_timeout, "s")
        loop.quit()
        return False
    return True


pipe.set_state(Gst.State.PLAYING)
GLib.timeout_add(20, begin)
GLib.timeout_add(100, check_live)
if args.duration > 0:
    GLib.timeout_add(int(args.duration * 1000), loop.quit)
try:
    loop.run()
except KeyboardInterrupt:
    pass
status = delete(args.url, st.get("location"))
pipe.set_state(Gst.State.NULL)
ok = st.get("status") == 201 and st.get("live_emitted", False) and not st.get("errors")
emit({"event": "result", "ok": ok, "post_status": st.get("status"), "location": st.get("location"),
      "post_error": st.get("error"), "connected_ms": st.get("connected_ms"),
      "connection_state": st.get("connection_state"), "delete_status": status, "errors": st.get("errors")})
raise SystemExit(0 if ok else 1)
