#!/usr/bin/python3
"""A test RTSP camera: GStreamer's RTSP server (gir1.2-gst-rtsp-server-1.0)
serving x264 H.264 (1 s GOP) + G.711 µ-law on 127.0.0.1:PORT/cam.

    /usr/bin/python3 rtsp_server.py PORT

Prints READY when it listens; runs until killed.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port = sys.argv[1]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=400 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 "
    "audiotestsrc is-live=true wave=sine freq=440 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 "
    "! mulawenc ! rtppcmupay name=pay1 pt=0 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    print("cannot listen", flush=True)
    sys.exit(1)
print("READY", flush=True)
GLib.MainLoop().run()
