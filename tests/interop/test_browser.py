"""Chromium publishes through the server's /publish.html (fake camera,
640x480) and another Chromium plays it through /watch.html; the medooze
`whip-whep` npm library publishes, plays, ICE-restarts and DELETEs."""

import pytest

from harness import chromium_play_argv, chromium_publish_argv, record, ttff


def test_chromium_publish_and_play_via_web_page(sfu, clients, node_bin):
    stream = "browser"
    pub = clients("chromium-publisher", chromium_publish_argv(node_bin, sfu.base, stream, duration=30))
    live = pub.wait_event("live", 40)
    assert live, f"Chromium publisher not live: {pub.finish(5) if pub.proc.poll() is not None else ''}\n" \
                 f"{pub.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    entry = sfu.wait_live(stream)

    viewer = clients("chromium-viewer", chromium_play_argv(node_bin, sfu.base, stream, 4))
    res = viewer.finish(timeout=60)
    record("test_chromium_publish_and_play_via_web_page", client="chromium", publisher_camera=live.get("camera"),
           stream_entry=entry, **{k: res.get(k) for k in ("ok", "width", "height", "ttffMs", "framesDecoded",
                                                         "stats", "error", "consoleErrors")})
    assert res.get("ok"), f"viewer failed: {res}\n{viewer.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    assert (res["width"], res["height"]) == (640, 480), res
    assert res["framesDecoded"] >= 30, res
    print(f"chromium viewer: ttff {ttff(res)} ms, {res['framesDecoded']} frames {res['width']}x{res['height']}; "
          f"stream {entry}")

    assert pub.proc.poll() is None, f"publisher ended early: {pub.finish(1)}"


def test_chromium_publish_vp8_and_play(sfu, clients, node_bin, aiortc_python):
    """The publish page's VP8 choice: Chromium and aiortc viewers decode it."""
    from harness import aiortc_play_argv

    stream = "vp8"
    pub = clients("chromium-publisher", chromium_publish_argv(node_bin, sfu.base, stream, duration=30,
                                                              extra=["--codec", "VP8"]))
    assert pub.wait_event("live", 40), f"Chromium publisher not live:\n{pub.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    entry = sfu.wait_live(stream)
    assert any("vp8" in c.lower() for c in entry["codecs"]), entry
    viewer = clients("chromium-viewer", chromium_play_argv(node_bin, sfu.base, stream, 3))
    aio = clients("aiortc-viewer", aiortc_play_argv(aiortc_python, sfu.url("whep", stream), 3))
    res, ares = viewer.finish(timeout=60), aio.finish(timeout=60)
    for name, r in (("chromium", res), ("aiortc", ares)):
        record("test_chromium_publish_vp8_and_play", client=name, codecs=entry["codecs"],
               **{k: r.get(k) for k in ("ok", "width", "height", "ttffMs", "ttff_ms", "framesDecoded", "frames",
                                        "error")})
    assert res.get("ok"), f"chromium viewer failed: {res}\n--- sfu ---\n{sfu.log_tail()}"
    assert (res["width"], res["height"]) == (640, 480), res
    assert ares.get("ok"), f"aiortc viewer failed: {ares}\n--- sfu ---\n{sfu.log_tail()}"
    assert (ares["width"], ares["height"]) == (640, 480), ares


def test_whip_whep_library_publish_play_restart_delete(sfu, clients, node_bin):
    """The medooze `whip-whep` npm library (WHIPClient/WHEPClient 1.2.0) in
    headless Chromium: publish with trickle ICE (PATCH sdpfrag → 204), play,
    ICE-restart both sessions with the library's restart() (PATCH with
    `If-Match: "*"` → 200 + new credentials and ETag; the viewer keeps
    decoding over the new ICE session), stop() both (DELETE → 200)."""
    import time

    from harness import BROWSER_DIR

    if not (BROWSER_DIR / "node_modules" / "whip-whep" / "whip.js").exists():
        pytest.fail("tests/interop/browser/node_modules/whip-whep missing: run tests/interop/setup.sh")
    stream = "whipwhep"
    c = clients("chromium-whip-whep", [node_bin, str(BROWSER_DIR / "whip_whep.mjs"), "--base", sfu.base,
                                       "--stream", stream])
    res = c.finish(timeout=180)
    after = res.get("after") or {}
    record("test_whip_whep_library_publish_play_restart_delete", client="chromium-whip-whep", ok=res.get("ok"),
           playMs=res.get("playMs"), width=(after.get("play") or {}).get("width"),
           height=(after.get("play") or {}).get("height"), error=res.get("error"))
    http = res.get("http") or []
    ctx = f"{res}\n{c.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    assert res.get("ok"), f"whip-whep client failed: {ctx}"

    def calls(method, kind):
        return [h for h in http if h["method"] == method and h["path"].startswith(f"/{kind}/{stream}")]

    for kind in ("whip", "whep"):
        posts = [p for p in calls("POST", kind) if p["path"] == f"/{kind}/{stream}"]
        assert [p["status"] for p in posts] == [201], f"{kind} POST: {posts}"
        patches = calls("PATCH", kind)
        trickles = [p for p in patches if p["ifMatch"] != "*" and "a=candidate:" in (p["body"] or "")]
        restarts = [p for p in patches if p["ifMatch"] == "*"]
        assert trickles and all(p["status"] == 204 for p in trickles), f"{kind} trickle PATCHes: {patches}"
        assert all(p["contentType"] == "application/trickle-ice-sdpfrag" for p in patches), patches
        assert [p["status"] for p in restarts] == [200], f"{kind} ICE restart PATCH: {patches}"
        assert restarts[0]["etag"] and restarts[0]["etag"] != posts[0]["etag"], f"{kind}: new ETag {restarts}"
        assert [d["status"] for d in calls("DELETE", kind)] == [200], f"{kind} DELETE: {http}"
    # WHEPClient subscribes to the server-sent events extension advertised in
    # the answer: POST of the event list → 201, then its EventSource GET → 200.
    sse = [h for h in http if "/sse" in h["path"]]
    assert [(h["method"], h["status"]) for h in sse] == [("POST", 201), ("GET", 200)], sse
    for side in ("pub", "play"):
        before, now = res["before"][side], after[side]
        assert now["remoteUfrag"] != before["remoteUfrag"], f"{side}: server ufrag unchanged {before} {now}"
        assert now["localUfrag"] != before["localUfrag"], f"{side}: client ufrag unchanged {before} {now}"
    assert (after["play"]["width"], after["play"]["height"]) == (640, 480), after
    assert after["play"]["audioPackets"] > 0, after
    log = sfu.log_tail(400)
    assert log.count("ICE restart: new credentials") == 2, f"two ICE restarts expected:\n{log}"
    # DELETE of the publisher ends the stream.
    deadline = time.time() + 5
    while (s := sfu.stream(stream)) and s.get("publisher") == "live" and time.time() < deadline:
        time.sleep(0.2)
    assert not s or s.get("publisher") != "live", f"stream still live after DELETE: {s}"
    print(f"whip-whep: viewer decoding {res.get('playMs')} ms after its POST; after restart {after}")
