"""GStreamer webrtcbin WHEP viewer: recvonly H.264 + Opus, complete offer,
decodes the video (decodebin → avdec_h264) and the audio, and prints one
{"event":"result", ...} JSON line with decoded frames, decoded resolution and
the time from its POST to the first decoded video frame (ttff_ms).

usage: gst_play.py WHEP_URL [--duration S] [--wait-go] [--latency MS]

--duration: seconds to keep watching after the POST (the run ends earlier
  with a failure if no frame was decoded within --first-frame-timeout).
--wait-go: print {"event":"ready"} once the offer is gathered, then POST
  only after a line arrives on stdin (lets a test start viewers at once).
Exit status 0 iff at least one video frame was decoded."""

import argparse
import time

from gi.repository import GObject
from whip_gst import (GLib, Gst, GstWebRTC, bus_errors, delete, emit, log, negotiate,
                      use_ecdsa_certificate, watch_states)

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("--duration", type=float, default=5.0)
ap.add_argument("--first-frame-timeout", type=float, default=10.0)
ap.add_argument("--wait-go", action="store_true")
ap.add_argument("--latency", type=int, default=200, help="webrtcbin jitterbuffer latency (ms); GStreamer's default")
ap.add_argument("--no-audio", action="store_true")
ap.add_argument("--bundle-policy", default="max-bundle", choices=["max-bundle", "max-compat", "balanced"])
ap.add_argument("--h264-profile", default="42e01f")
args = ap.parse_args()

# Load the plugins decodebin will pick (RTP depayloaders, parser, decoders)
# now, while the client gets ready, not after the first packet: dlopen of
# libav and friends took 100–200 ms of the measured POST → first frame on a
# busy 2-core machine, a cost of this process's start-up, not of the server.
for name in ("decodebin", "rtph264depay", "h264parse", "avdec_h264", "rtpopusdepay", "opusparse", "opusdec",
             "fakesink"):
    f = Gst.ElementFactory.find(name)
    if f is not None:
        f.load()

pipe = Gst.Pipeline.new("p")
webrtc = Gst.ElementFactory.make("webrtcbin", "w")
# webrtcbin adds its video and audio src pads from two streaming threads at
# once; PyGObject then built the Python class of the (private) pad type twice
# concurrently and one `pad-added` call failed with "Must be Gst.Pad, not
# GstWebRTCBinSrcPad", leaving that pad unlinked (not-linked error, no video).
# Building the class here, on the main thread, before any pad exists, avoids it.
GObject.new(GObject.type_from_name("GstWebRTCBinSrcPad"), direction=Gst.PadDirection.SRC, name="warm-up")
webrtc.set_property("bundle-policy", args.bundle_policy)
webrtc.set_property("latency", args.latency)
pipe.add(webrtc)
use_ecdsa_certificate(pipe)
loop = GLib.MainLoop()
st = {}
stats = {"frames": 0, "width": 0, "height": 0, "ttff_ms": None, "audio_buffers": 0, "first_audio_ms": None,
         "video_decoder": None}
watch_states(webrtc, st)
bus_errors(pipe, loop, st)

fb = "rtcp-fb-nack=(boolean)true,rtcp-fb-nack-pli=(boolean)true,rtcp-fb-ccm-fir=(boolean)true"
video_caps = ("application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96,"
              f"packetization-mode=(string)1,profile-level-id=(string){args.h264_profile},"
              f"level-asymmetry-allowed=(string)1,{fb}")
audio_caps = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111,encoding-params=(string)2"
for caps in [video_caps] + ([] if args.no_audio else [audio_caps]):
    t = webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(caps))
    if caps is video_caps:
        t.set_property("do-nack", True)


def ms_since_post():
    return round((time.monotonic() - st["t_post"]) * 1000, 1) if "t_post" in st else None


def on_video_frame(_sink, _buf, pad):
    stats["frames"] += 1
    if stats["ttff_ms"] is None:
        stats["ttff_ms"] = ms_since_post()
        s = pad.get_current_caps().get_structure(0)
        stats["width"], stats["height"] = s.get_value("width"), s.get_value("height")
        log("first decoded frame", stats["width"], "x", stats["height"], "after", stats["ttff_ms"], "ms")
        GLib.idle_add(lambda: (emit({"event": "first-frame", "ttff_ms": stats["ttff_ms"],
                                     "width": stats["width"], "height": stats["height"]}), False)[1])


def on_audio(_sink, _buf, _pad):
    stats["audio_buffers"] += 1
    if stats["first_audio_ms"] is None:
        stats["first_audio_ms"] = ms_since_post()


def on_decoded_pad(_dbin, pad):
    caps = pad.get_current_caps() or pad.query_caps(None)
    name = caps.get_structure(0).get_name()
    sink = Gst.ElementFactory.make("fakesink")
    sink.set_property("signal-handoffs", True)
    sink.set_property("sync", False)
    sink.set_property("async", False)
    sink.connect("handoff", on_video_frame if name.startswith("video") else on_audio)
    pipe.add(sink)
    sink.sync_state_with_parent()
    pad.link(sink.get_static_pad("sink"))


def on_element_added(_bin, element):
    f = element.get_factory()
    if f is not None and (f.get_metadata("klass") or "").startswith("Codec/Decoder/Video"):
        stats["video_decoder"] = f.get_name()


def on_pad(_w, pad):
    if pad.direction != Gst.PadDirection.SRC:
        return
    log("webrtcbin pad", pad.get_name(), pad.get_current_caps().to_string() if pad.get_current_caps() else "")
    dec = Gst.ElementFactory.make("decodebin")
    dec.connect("pad-added", on_decoded_pad)
    dec.connect("element-added", on_element_added)
    pipe.add(dec)
    dec.sync_state_with_parent()
    pad.link(dec.get_static_pad("sink"))


def watchdog():
    if "t_post" not in st:
        if time.monotonic() - t0 > 20:
            st["error"] = "offer not gathered/posted within 20 s"
            loop.quit()
            return False
        return True
    since = time.monotonic() - st["t_post"]
    if stats["frames"] == 0 and since > args.first_frame_timeout:
        st["error"] = f"no decoded video frame within {args.first_frame_timeout} s of the POST"
        loop.quit()
        return False
    if since > args.duration:
        loop.quit()
        return False
    return True


webrtc.connect("pad-added", on_pad)
pipe.set_state(Gst.State.PLAYING)
t0 = time.monotonic()
negotiate(webrtc, args.url, loop, st, wait_go=args.wait_go)
GLib.timeout_add(50, watchdog)
loop.run()
stats["delete_status"] = delete(args.url, st.get("location"))
pipe.set_state(Gst.State.NULL)
answer = st.get("answer") or ""
stats.update(event="result", client="gstreamer", ok=stats["frames"] > 0, post_status=st.get("status"),
             location=st.get("location"), error=st.get("error"), errors=st.get("errors"),
             connected_ms=st.get("connected_ms"), connection_state=st.get("connection_state"),
             latency_ms=args.latency,
             answer_video_codec=[ln for ln in answer.splitlines() if ln.startswith("a=fmtp:")][:2])
emit(stats)
raise SystemExit(0 if stats["frames"] > 0 else 1)
