"""The server's web UI in headless Chromium: a GStreamer publisher is live, then
browser/web.mjs walks index.html (stream card with a playing preview, viewer
count, copy buttons), watch.html (decoded 640x360 video, stats panel, no layer
picker, settings for other software), watch.html with a WHEP layer-extension
Link added to the answer by the test (picker shown, POST {rid}/DELETE), publish.html on an insecure origin (a
hint instead of an error) and publish.html going live (fake camera, trickle
ICE). No page may log a console error, page error or unhandled rejection.
Screenshots land in artifacts/screenshots/. Then the publish page's codec
choice (VP9, AV1 with trickle ICE) and simulcast toggle, each played back."""

import pytest

from harness import ARTIFACTS, BROWSER_DIR, Sfu, chromium_play_argv, chromium_publish_argv, gst_publish_argv, record

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
    watch = (res.get("pages") or {}).get("watch") or {}
    player = watch.get("player") or {}
    record("test_web_ui_pages", client="chromium-watch-page", ok=res.get("ok"), problems=res.get("problems"),
           ttffMs=player.get("ttffMs"), width=player.get("width"), height=player.get("height"),
           framesDecoded=player.get("framesDecoded"), stats=watch.get("stats"))
    assert res.get("ok"), (f"web UI problems: {res.get('problems')}\nresult: {res}\n{web.log_tail()}\n"
                           f"--- sfu ---\n{sfu.log_tail()}")
    for name in ("index", "watch", "watch-layers", "publish", "publish-insecure"):
        shot = SHOTS / f"{name}.png"
        assert shot.exists() and shot.stat().st_size > 5000, f"screenshot {shot} missing or empty"
    print(f"web UI: watch stats {watch['stats']}; index {res['pages']['index'].get('info')}")
    assert pub.proc.poll() is None, f"publisher ended early: {pub.finish(1)}"


@pytest.mark.parametrize("stream,query,codec,size", [
    ("vp9", "codec=VP9", "vp9", (640, 480)),
    ("av1", "codec=AV1&trickle=1", "av1", (640, 480)),
    # The sfu forwards one layer per viewer (the top active one by default; Chromium may
    # send it below 1280x720 while its encoder ramps up), so any size goes.
    ("simulcast", "simulcast=1&resolution=1280x720", "h264", None),
], ids=["vp9", "av1-trickle", "simulcast"])
def test_web_publish_page_options(sfu, clients, node_bin, stream, query, codec, size):
    """/publish.html's codec choice (VP9, AV1 with trickle ICE) and simulcast toggle
    (rids h/m/l at 1280x720): the server takes the offer and Chromium decodes it
    through /watch.html."""
    pub = clients("chromium-publisher", chromium_publish_argv(node_bin, sfu.base, stream, duration=20,
                                                              extra=["--query", query]))
    assert pub.wait_event("live", 40), f"publisher not live:\n{pub.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    entry = sfu.wait_live(stream)
    assert any(codec in c.lower() for c in entry["codecs"]), entry
    viewer = clients("chromium-viewer", chromium_play_argv(node_bin, sfu.base, stream, 3))
    res = viewer.finish(timeout=60)
    record("test_web_publish_page_options", client=f"chromium-{stream}", codecs=entry["codecs"],
           **{k: res.get(k) for k in ("ok", "width", "height", "ttffMs", "framesDecoded", "stats", "error")})
    assert res.get("ok"), f"viewer failed: {res}\n--- sfu ---\n{sfu.log_tail()}"
    if size:
        assert (res["width"], res["height"]) == size, res
    assert pub.proc.poll() is None, f"publisher ended early: {pub.finish(1)}"


@pytest.fixture
def sfu_tokens(net, test_dir):
    s = Sfu(net, test_dir / "sfu.log", extra=["--publish-token", "pub-secret", "--view-token", "view-secret"])
    yield s
    s.stop()


def test_web_pages_pass_token_on(sfu_tokens, clients, node_bin):
    """`?token=` on the publish and watch pages goes out as `Authorization: Bearer`
    (the server requires a publish and a view token here)."""
    sfu, stream = sfu_tokens, "secret"
    status, _, _ = sfu.net.http("POST", sfu.url("whip", stream), body="v=0\r\n",
                                headers={"Content-Type": "application/sdp"})
    assert status == 401, f"the server should require the publish token, got {status}"
    pub = clients("chromium-publisher", chromium_publish_argv(node_bin, sfu.base, stream, duration=15,
                                                              extra=["--query", "token=pub-secret"]))
    live = pub.wait_event("live", 40)
    assert live and live.get("status") == 201, f"publisher not live:\n{pub.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    sfu.wait_live(stream)
    viewer = clients("chromium-viewer", chromium_play_argv(node_bin, sfu.base, stream, 2,
                                                           extra=["--query", "token=view-secret"]))
    res = viewer.finish(timeout=60)
    assert res.get("ok"), f"viewer with token failed: {res}\n--- sfu ---\n{sfu.log_tail()}"
    log = sfu.log_tail(400)
    assert log.count("status=401") == 1, f"only the token-less POST above may be refused:\n{log}"
