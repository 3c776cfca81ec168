"""GStreamer webrtcbin publisher → sfu → GStreamer webrtcbin viewer.

webrtcbin is set up the way GStreamer WHIP clients (simple-whip-client,
whipsink) set it up: bundle-policy max-bundle. Two stock-GStreamer details
are exercised by their own tests: the `a=bundle-only` audio m-line that
max-bundle produces, and GStreamer's default RSA DTLS certificate, as a
publisher and as a viewer (the other tests give webrtcbin an ECDSA
certificate, as browsers use)."""

import os

from harness import gst_play_argv, gst_publish_argv, record, ttff


def _publish(sfu, clients, gst_python, stream, extra=(), env=None):
    pub = clients("gst-publisher", gst_publish_argv(gst_python, sfu.url("whip", stream), duration=25, extra=extra),
                  env=env)
    assert pub.wait_event("live", 20), f"GStreamer publisher not live:\n{pub.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    return pub, sfu.wait_live(stream)


def test_gstreamer_publish_and_play(sfu, clients, gst_python):
    stream = "gst"
    pub, entry = _publish(sfu, clients, gst_python, stream)
    assert any("h264" in c.lower() for c in entry["codecs"]), entry

    viewer = clients("gst-viewer", gst_play_argv(gst_python, sfu.url("whep", stream), duration=4))
    res = viewer.finish(timeout=40)
    record("test_gstreamer_publish_and_play", client="gstreamer", stream_entry=entry,
           **{k: res.get(k) for k in ("ok", "frames", "width", "height", "ttff_ms", "connected_ms",
                                      "audio_buffers", "first_audio_ms", "video_decoder", "error")})
    assert res.get("ok"), f"viewer failed: {res}\n{viewer.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    assert (res["width"], res["height"]) == (640, 360), res
    assert res["frames"] >= 30, f"only {res['frames']} frames decoded in 4 s: {res}"
    assert res.get("delete_status") == 200, res
    print(f"gstreamer viewer: ttff {ttff(res)} ms, {res['frames']} frames {res['width']}x{res['height']}")
    assert sfu.stream(stream)["publisher"] == "live"
    assert pub.proc.poll() is None, f"publisher ended early: {pub.finish(1)}"


def _audio_round_trip(sfu, clients, gst_python, stream, pub_policy, view_policy, test):
    pub, entry = _publish(sfu, clients, gst_python, stream, extra=["--bundle-policy", pub_policy])
    published_opus = any("opus" in c.lower() for c in entry["codecs"])
    res = None
    if published_opus:
        viewer = clients("gst-viewer", gst_play_argv(gst_python, sfu.url("whep", stream), duration=3,
                                                     extra=["--bundle-policy", view_policy]))
        res = viewer.finish(timeout=40)
    record(test, client="gstreamer", publisher_bundle_policy=pub_policy, viewer_bundle_policy=view_policy,
           codecs=entry["codecs"], **{k: (res or {}).get(k) for k in ("ok", "frames", "audio_buffers",
                                                                       "first_audio_ms", "ttff_ms", "error")})
    assert published_opus, (
        f"publisher offered H.264 + Opus with bundle-policy={pub_policy}, /api/streams shows {entry['codecs']}; "
        f"the answer's audio section:\n{_answer_audio(pub)}")
    assert res.get("ok") and res.get("audio_buffers", 0) > 0, (
        f"viewer (bundle-policy={view_policy}) decoded no Opus: {res}\nthe answer's audio section:\n"
        f"{_answer_audio(viewer)}")


def _answer_audio(client):
    try:
        text = open(client.log_path).read()
    except OSError:
        return ""
    i = text.find("answer:")
    j = text.find("m=audio", i)
    return text[j:j + 400] if i >= 0 and j >= 0 else ""


def test_gstreamer_max_bundle_audio_publish(sfu, clients, gst_python):
    """A max-bundle WHIP offer carries audio as `m=audio 0 ... a=bundle-only`
    (JSEP 5.2.1); the server must accept it inside the BUNDLE group."""
    _audio_round_trip(sfu, clients, gst_python, "gstaudio", "max-bundle", "max-compat",
                      "test_gstreamer_max_bundle_audio_publish")


def test_gstreamer_max_bundle_audio_play(sfu, clients, gst_python):
    """The same on the WHEP side: a max-bundle viewer's bundle-only audio m-line."""
    _audio_round_trip(sfu, clients, gst_python, "gstaudio2", "max-compat", "max-bundle",
                      "test_gstreamer_max_bundle_audio_play")


def test_gstreamer_max_compat_audio(sfu, clients, gst_python):
    """Control: Opus both ways when no m-line is bundle-only."""
    _audio_round_trip(sfu, clients, gst_python, "gstcompat", "max-compat", "max-compat",
                      "test_gstreamer_max_compat_audio")


def test_gstreamer_default_rsa_certificate(sfu, clients, gst_python):
    """Stock webrtcbin publishes with an RSA 2048 DTLS certificate
    (simple-whip-client, whipsink, whipclientsink use exactly that): the
    server completes DTLS with it (OpenSSL, chosen from the ClientHello;
    dimpl, str0m's own stack, accepts only ECDSA) and a viewer decodes the
    stream, so the SRTP keys agree."""
    stream = "rsa"
    pub, entry = _publish(sfu, clients, gst_python, stream, env={**os.environ, "GST_DTLS_RSA": "1"})
    viewer = clients("gst-viewer", gst_play_argv(gst_python, sfu.url("whep", stream), duration=3))
    res = viewer.finish(timeout=40)
    record("test_gstreamer_default_rsa_certificate", client="gstreamer-publisher-rsa", codecs=entry["codecs"],
           **{k: res.get(k) for k in ("ok", "frames", "ttff_ms", "error")})
    assert res.get("ok") and res.get("frames", 0) >= 20, (
        f"viewer of the RSA publisher: {res}\n{viewer.log_tail()}\n--- sfu ---\n{sfu.log_tail()}")
    assert pub.proc.poll() is None, f"publisher ended early: {pub.finish(1)}"


def test_gstreamer_default_rsa_certificate_play(sfu, clients, gst_python):
    """The same on the WHEP side: a stock webrtcbin viewer (whepsrc) with its
    default RSA certificate decodes the stream."""
    stream = "rsaplay"
    _publish(sfu, clients, gst_python, stream)
    viewer = clients("gst-viewer-rsa", gst_play_argv(gst_python, sfu.url("whep", stream), duration=3),
                     env={**os.environ, "GST_DTLS_RSA": "1"})
    res = viewer.finish(timeout=40)
    record("test_gstreamer_default_rsa_certificate_play", client="gstreamer-viewer-rsa",
           **{k: res.get(k) for k in ("ok", "frames", "error")})
    assert res.get("ok") and res.get("frames", 0) >= 20, f"RSA viewer: {res}"
