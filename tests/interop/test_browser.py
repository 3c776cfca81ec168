"""Chromium publishes through the server's /publish.html (fake camera,
640x480) and another Chromium plays it through /watch.html."""

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
