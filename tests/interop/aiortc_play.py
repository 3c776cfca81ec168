"""aiortc WHEP viewer: recvonly video + audio, complete offer (aiortc gathers
inside setLocalDescription), decodes video with aiortc's own decoder
(track.recv()), and prints one {"event":"result", ...} JSON line: decoded
frames, resolution, POST → first decoded frame (ttff_ms), audio frames.

usage: aiortc_play.py WHEP_URL [--duration S] [--wait-go] [--codec H264|VP8|any]

Exit status 0 iff at least one video frame was decoded (and, with
--require-audio, at least one audio frame)."""

import argparse
import asyncio
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                 headers={"Content-Type": "application/sdp"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers.get("Location"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), None, e.headers


async def main(args):
    # No ICE servers: aiortc would otherwise default to a public STUN server.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    stats = {"frames": 0, "width": 0, "height": 0, "ttff_ms": None, "audio_frames": 0, "first_audio_ms": None}
    st = {}
    first_frame = asyncio.Event()
    vt = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    if args.codec != "any":
        caps = RTCRtpReceiver.getCapabilities("video").codecs
        prefs = [c for c in caps if c.mimeType.lower() in (f"video/{args.codec.lower()}", "video/rtx")]
        vt.setCodecPreferences(prefs)

    def ms():
        return round((time.monotonic() - st["t_post"]) * 1000, 1)

    async def consume(track):
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    stats["frames"] += 1
                    if stats["ttff_ms"] is None:
                        stats["ttff_ms"] = ms()
                        stats["width"], stats["height"] = frame.width, frame.height
                        log("first decoded frame", frame.width, "x", frame.height, "after", stats["ttff_ms"], "ms")
                        emit({"event": "first-frame", "ttff_ms": stats["ttff_ms"], "width": frame.width,
                              "height": frame.height})
                        first_frame.set()
                else:
                    stats["audio_frames"] += 1
                    if stats["first_audio_ms"] is None:
                        stats["first_audio_ms"] = ms()
        except Exception as e:  # MediaStreamError when the track ends
            log(track.kind, "track ended:", type(e).__name__, e)

    tasks = []

    @pc.on("track")
    def on_track(track):
        log("track", track.kind)
        tasks.append(asyncio.ensure_future(consume(track)))

    @pc.on("connectionstatechange")
    def on_state():
        log("connection state", pc.connectionState)
        st["connection_state"] = pc.connectionState
        if pc.connectionState == "connected" and "t_post" in st and "connected_ms" not in st:
            st["connected_ms"] = ms()

    await pc.setLocalDescription(await pc.createOffer())
    emit({"event": "ready"})
    loop = asyncio.get_running_loop()
    if args.wait_go:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        log("stdin:", line.strip() or "<eof>")
    st["t_post"] = time.monotonic()
    status, body, location, headers = await loop.run_in_executor(None, http, "POST", args.url,
                                                                 pc.localDescription.sdp)
    st.update(status=status, location=location, retry_after=headers.get("Retry-After"))
    log("offer:\n" + pc.localDescription.sdp)
    log("POST ->", status, location)
    log("answer:\n" + body)
    if status != 201:
        st["error"] = f"POST -> {status}: {body.strip()[:300]}"
    else:
        st["answer"] = body
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        except Exception as e:  # aiortc cannot take an answer that rejects an m-line (port 0, no codec)
            rejected = [ln for ln in body.splitlines() if ln.startswith("m=") and ln.split()[1] == "0"]
            st["error"] = f"setRemoteDescription failed: {type(e).__name__}: {e}; rejected m-lines: {rejected}"
            log(st["error"])
    if "answer" in st and "error" not in st:
        try:
            await asyncio.wait_for(first_frame.wait(), timeout=args.first_frame_timeout)
            left = args.duration - (time.monotonic() - st["t_post"])
            if left > 0:
                await asyncio.sleep(left)
        except asyncio.TimeoutError:
            st["error"] = f"no decoded video frame within {args.first_frame_timeout} s of the POST"
    delete_status = None
    if location:
        delete_status = (await loop.run_in_executor(None, http, "DELETE", urljoin(args.url, location)))[0]
    await pc.close()
    for t in tasks:
        t.cancel()
    answer = st.get("answer", "")
    ok = stats["frames"] > 0 and (stats["audio_frames"] > 0 or not args.require_audio)
    stats.update(event="result", client="aiortc", ok=ok, post_status=status, location=location,
                 error=st.get("error"), retry_after=st.get("retry_after"), connected_ms=st.get("connected_ms"),
                 connection_state=st.get("connection_state"), delete_status=delete_status,
                 audio=stats["audio_frames"] > 0,
                 answer_rtpmap=[ln for ln in answer.splitlines() if ln.startswith("a=rtpmap:")][:4])
    emit(stats)
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--first-frame-timeout", type=float, default=10.0)
    ap.add_argument("--wait-go", action="store_true")
    ap.add_argument("--require-audio", action="store_true")
    ap.add_argument("--codec", default="any", help="restrict the video offer to H264 or VP8 (default: aiortc's list)")
    ap.add_argument("--debug", action="store_true")
    a = ap.parse_args()
    if a.debug:
        logging.basicConfig(level=logging.DEBUG)
    try:
        rc = asyncio.run(asyncio.wait_for(main(a), timeout=a.duration + a.first_frame_timeout + 30))
    except asyncio.TimeoutError:
        emit({"event": "result", "client": "aiortc", "ok": False, "error": "overall timeout"})
        rc = 1
    sys.exit(rc)
