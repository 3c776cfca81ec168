"""aiortc publishes (H.264 Constrained Baseline + Opus); aiortc and GStreamer play."""

from harness import aiortc_play_argv, aiortc_publish_argv, gst_play_argv, record, ttff


def test_aiortc_publish_aiortc_and_gstreamer_play(sfu, clients, aiortc_python, gst_python):
    stream = "aio"
    pub = clients("aiortc-publisher", aiortc_publish_argv(aiortc_python, sfu.url("whip", stream), duration=30))
    assert pub.wait_event("live", 25), f"aiortc publisher not live:\n{pub.log_tail()}\n{sfu.log_tail()}"
    entry = sfu.wait_live(stream)
    assert any("h264" in c.lower() for c in entry["codecs"]), entry

    whep = sfu.url("whep", stream)
    a = clients("aiortc-viewer", aiortc_play_argv(aiortc_python, whep, 5, extra=["--require-audio"]))
    g = clients("gst-viewer", gst_play_argv(gst_python, whep, 5))
    results = {"aiortc": a.finish(timeout=60), "gstreamer": g.finish(timeout=60)}
    for name, res in results.items():
        record("test_aiortc_publish_aiortc_and_gstreamer_play", client=name, publisher="aiortc",
               **{k: res.get(k) for k in ("ok", "frames", "width", "height", "ttff_ms", "connected_ms", "error",
                                          "audio_frames", "audio_buffers")})
    print("aiortc publisher:", {n: (ttff(r), r.get("frames"), r.get("width"), r.get("height"))
                                for n, r in results.items()})
    for name, res in results.items():
        assert res.get("ok"), f"{name} viewer failed: {res}\n--- sfu ---\n{sfu.log_tail()}"
        assert (res["width"], res["height"]) == (640, 360), (name, res)
        assert res["frames"] >= 20, (name, res)
    assert results["aiortc"]["audio_frames"] > 0, results["aiortc"]
    assert pub.proc.poll() is None, f"publisher ended early: {pub.finish(1)}"


def test_whep_without_publisher_gets_409(sfu, clients, aiortc_python):
    """WHEP POST for a stream nobody publishes: 409 with Retry-After."""
    c = clients("aiortc-viewer", aiortc_play_argv(aiortc_python, sfu.url("whep", "nobody"), 1,
                                                  extra=["--first-frame-timeout", "2"]))
    res = c.finish(timeout=30)
    record("test_whep_without_publisher_gets_409", client="aiortc", post_status=res.get("post_status"),
           retry_after=res.get("retry_after"))
    assert res.get("post_status") == 409, res
    assert res.get("retry_after"), f"409 without Retry-After: {res}"
