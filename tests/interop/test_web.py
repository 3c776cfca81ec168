"""The server's web UI in headless Chromium: a GStreamer publisher is live, then
browser/web.mjs walks index.html (stream card with a playing preview, viewer
count, copy buttons), watch.html (decoded 640x360 video, stats panel, no layer
picker, settings for other software), watch.html with a WHEP layer-extension
Link added to the answer by the test (picker shown, POST {rid}/DELETE), publish.html on an insecure origin (a
hint instead of an error) and publish.html going live (fake camera, trickle
ICE). No page may log a console error, page error or unhandled rejection.
Screenshots land in artifacts/screenshots/."""

from harness import ARTIFACTS, BROWSER_DIR, gst_publish_argv, record

SHOTS = ARTIFACTS / "screenshots"


def test_web_ui_pages(sfu, clients, gst_python, node_bin):
    stream = "web"
    pub = clients("gst-publisher", gst_publish_argv(gst_python, sfu.url("whip", stream), duration=120,
                                                    extra=["--bundle-policy", "max-compat"]))
    assert pub.wait_event("live", 20), f"GStreamer publisher not live:\n{pub.log_tail()}\n{sfu.log_tail()}"
    sfu.wait_live(stream)

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    web = clients("chromium-web", [node_bin, str(BROWSER_DIR / "web.mjs"), "--base", sfu.base, "--stream", stream,
                                   "--publish-stream", "webpub", "--shots", str(SHOTS)])
    res = web.finish(timeout=180)
    record("test_web_ui_pages", client="chromium-web", ok=res.get("ok"), problems=res.get("problems"),
           watch=(res.get("pages") or {}).get("watch"))
    assert res.get("ok"), (f"web UI problems: {res.get('problems')}\nresult: {res}\n{web.log_tail()}\n"
                           f"--- sfu ---\n{sfu.log_tail()}")
    for name in ("index", "watch", "watch-layers", "publish", "publish-insecure"):
        shot = SHOTS / f"{name}.png"
        assert shot.exists() and shot.stat().st_size > 5000, f"screenshot {shot} missing or empty"
    watch = res["pages"]["watch"]
    print(f"web UI: watch stats {watch['stats']}; index {res['pages']['index'].get('info')}")
    assert pub.proc.poll() is None, f"publisher ended early: {pub.finish(1)}"
