#!/usr/bin/python3
"""A test RTSP camera: GStreamer's RTSP server (gir1.2-gst-rtsp-server-1.0)
on 127.0.0.1:PORT/cam serving, by MODE:

    h264      x264 H.264 (1 s GOP) + G.711 µ-law (the default)
    h265      x265 H.265 (1 s GOP), parameter sets in the SDP's sprop-* only
    aac       AAC audio only (avenc_aac + rtpmp4gpay): no video
    h264+aac  x264 H.264 + AAC audio
    h264+opus x264 H.264 + Opus audio (48 kHz, 20 ms frames, opusenc + rtpopuspay)
    h265+opus x265 H.265 + the same Opus audio

    /usr/bin/python3 rtsp_server.py PORT [MODE [USER PASSWORD]]

With USER and PASSWORD the camera asks for Digest authentication (RFC 2617).

Prints READY when it listens; runs until killed.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

Gst.init(None)
port = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else "h264"
VIDEO = {
    "h264": "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=400 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 ",
    "h265": "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=400 "
    "! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 ",
}
PCMU = (
    "audiotestsrc is-live=true wave=sine freq=440 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 "
    "! mulawenc ! rtppcmupay name=pay{n} pt=0 "
)
AAC = (
    "audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=16000,channels=1 "
    "! avenc_aac ! aacparse ! rtpmp4gpay name=pay{n} pt=97 "
)
OPUS = (
    "audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=48000,channels=1 "
    "! opusenc frame-size=20 ! rtpopuspay name=pay{n} pt=111 "
)
LAUNCH = {
    "h264": VIDEO["h264"] + PCMU.format(n=1),
    "h265": VIDEO["h265"],
    "aac": AAC.format(n=0),
    "h264+aac": VIDEO["h264"] + AAC.format(n=1),
    "h264+opus": VIDEO["h264"] + OPUS.format(n=1),
    "h265+opus": VIDEO["h265"] + OPUS.format(n=1),
}
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( " + LAUNCH[mode] + ")")
factory.set_shared(True)
if len(sys.argv) > 4:
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    auth.add_digest(sys.argv[3], sys.argv[4], token)
    server.set_auth(auth)
    perms = GstRtspServer.RTSPPermissions()
    for perm in (GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT):
        perms.add_permission_for_role("user", perm, True)
    factory.set_permissions(perms)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    print("cannot listen", flush=True)
    sys.exit(1)
print("READY", flush=True)
GLib.MainLoop().run()
