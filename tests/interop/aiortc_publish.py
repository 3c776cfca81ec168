"""aiortc WHIP publisher: a synthetic moving picture encoded by aiortc's H.264
encoder (libx264 through PyAV; aiortc offers Constrained Baseline only) and
silence encoded as Opus, sendonly, complete offer.

usage: aiortc_publish.py WHIP_URL [--duration S] [--width W --height H] [--codec H264|VP8]

Prints {"event":"live"} once connected and a final {"event":"result", ...};
exit status non-zero if the POST was refused or the connection never came up."""

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

import av
from aiortc import (RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription,
                    VideoStreamTrack)
from aiortc.mediastreams import AudioStreamTrack


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                 headers={"Content-Type": "application/sdp"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), None


class MovingBars(VideoStreamTrack):
    """30 fps yuv420p frames: vertical luma bars scrolling sideways, colour
    changing slowly, so every frame differs (the encoder cannot skip them)."""

    def __init__(self, width, height):
        super().__init__()
        self.w, self.h = width, height
        self.n = 0
        row = bytearray()
        for x in range(2 * width):
            row.append(16 + ((x // 16) % 8) * 28)
        self.row = bytes(row)

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.w, self.h, "yuv420p")
        off = (self.n * 8) % self.w
        for i, plane in enumerate(frame.planes):
            ls, ph = plane.line_size, plane.height
            if i == 0:
                line = self.row[off:off + self.w] + b"\x10" * (ls - self.w)
            else:
                line = bytes([(self.n * (3 if i == 1 else 5)) % 256]) * ls
            plane.update(line * ph)
        frame.pts, frame.time_base = pts, time_base
        self.n += 1
        return frame


async def main(args):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no default public STUN server
    st = {}
    connected = asyncio.Event()
    vt = pc.addTransceiver(MovingBars(args.width, args.height), direction="sendonly")
    if not args.no_audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    caps = RTCRtpSender.getCapabilities("video").codecs
    vt.setCodecPreferences([c for c in caps if c.mimeType.lower() in (f"video/{args.codec.lower()}", "video/rtx")])

    @pc.on("connectionstatechange")
    def on_state():
        log("connection state", pc.connectionState)
        st["connection_state"] = pc.connectionState
        if pc.connectionState == "connected":
            st.setdefault("connected_ms", round((time.monotonic() - st["t_post"]) * 1000, 1))
            connected.set()
        elif pc.connectionState == "failed":
            st["failed"] = True

    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    st["t_post"] = time.monotonic()
    status, body, location = await loop.run_in_executor(None, http, "POST", args.url, pc.localDescription.sdp)
    log("offer:\n" + pc.localDescription.sdp)
    log("POST ->", status, location)
    log("answer:\n" + body)
    error = None
    live = False
    if status != 201:
        error = f"POST -> {status}: {body.strip()[:300]}"
    else:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        try:
            await asyncio.wait_for(connected.wait(), timeout=args.connect_timeout)
            live = True
            emit({"event": "live", "connected_ms": st.get("connected_ms"), "location": location})
            await asyncio.sleep(max(0.0, args.duration - (time.monotonic() - st["t_post"])))
        except asyncio.TimeoutError:
            error = f"not connected within {args.connect_timeout} s"
    delete_status = None
    if location:
        delete_status = (await loop.run_in_executor(None, http, "DELETE", urljoin(args.url, location)))[0]
    await pc.close()
    if st.get("failed") and error is None:
        error = "peer connection failed"
    ok = live and error is None
    emit({"event": "result", "client": "aiortc-publisher", "ok": bool(ok), "post_status": status,
          "location": location, "error": error, "connected_ms": st.get("connected_ms"),
          "delete_status": delete_status})
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--codec", default="H264")
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--connect-timeout", type=float, default=15.0)
    a = ap.parse_args()
    try:
        rc = asyncio.run(asyncio.wait_for(main(a), timeout=a.duration + a.connect_timeout + 30))
    except asyncio.TimeoutError:
        emit({"event": "result", "client": "aiortc-publisher", "ok": False, "error": "overall timeout"})
        rc = 1
    sys.exit(rc)
