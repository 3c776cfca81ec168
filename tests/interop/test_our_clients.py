"""Our own clients against an independent server: whip-ingest publishing to,
and load-test viewing from, a WHIP/WHEP server made of GStreamer's webrtcbin
(gst_server.py) with webrtcbin's default RSA 2048 DTLS certificate, as
GStreamer-based servers have. Our clients' DTLS is OpenSSL for this (dimpl,
str0m's own stack, takes ECDSA certificates only)."""

import json
import time

from harness import HERE, our_binary


def start_gst_server(net, clients, gst_python, extra=()):
    server = clients("gst-server", [gst_python, str(HERE / "gst_server.py"), "--listen", f"{net.srv_ip}:8080",
                                    *extra], server_side=True)
    assert server.wait_event("ready", 30), f"gst_server.py did not start; see {server.log_path}"
    return server, f"http://{net.srv_ip}:8080"


def stop_gst_server(server):
    server.proc.terminate()
    res = server.finish(20)
    assert res.get("sessions") is not None, res
    return res["sessions"]


def test_whip_ingest_publishes_to_gstreamer_server_with_rsa_certificate(net, clients, gst_python, test_dir):
    server, base = start_gst_server(net, clients, gst_python)
    ingest = clients("whip-ingest", [our_binary("whip-ingest"), "test", "--size", "320x240", "--fps", "30",
                                     "--bitrate", "500k", "--audio", "--url", f"{base}/whip/cam"],
                     env={"RUST_LOG": "info", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    time.sleep(10)
    ingest.stop()  # SIGTERM: whip-ingest DELETEs its session
    sessions = stop_gst_server(server)
    log = open(ingest.log_path, errors="replace").read()
    whip = [s for s in sessions if s["kind"] == "whip"]
    assert len(whip) == 1, f"{sessions}\nwhip-ingest log:\n{log[-3000:]}"
    s = whip[0]
    assert s["certificate_key"] == "rsa", s
    assert s["connection_state"] == "connected", f"{s}\nwhip-ingest log:\n{log[-3000:]}"
    # ≈ 9 s of 30 fps after ICE and DTLS: at least 3 s of decoded frames.
    assert s["frames_decoded"] >= 90, f"{s}\nwhip-ingest log:\n{log[-3000:]}"
    # The Opus beep: 20-ms packets, decoded by opusdec.
    assert s["audio_buffers_decoded"] >= 100, f"{s}\nwhip-ingest log:\n{log[-3000:]}"
    assert s["deleted"], f"whip-ingest did not DELETE its session: {s}"


def run_load_test(clients, test_dir, name, argv):
    out = test_dir / f"{name}.json"
    lt = clients(name, [our_binary("load-test"), "run", *argv, "--json", str(out)],
                 env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    lt.proc.wait(90)
    log = open(lt.log_path, errors="replace").read()
    assert out.exists(), f"no report; load-test log:\n{log[-3000:]}"
    return json.loads(out.read_text()), log


def test_load_test_views_gstreamer_server_with_rsa_certificate(net, clients, gst_python, test_dir):
    server, base = start_gst_server(net, clients, gst_python)
    common = ["--whep", f"{base}/whep/cam", "--settle", "1s", "--bind-ip", str(net.cli_ip)]
    # dimpl (the default) cannot take webrtcbin's RSA certificate: the join
    # fails after ICE, and the report says what to do.
    r, log = run_load_test(clients, test_dir, "load-test-dimpl", [*common, "--viewers", "1", "--duration", "1s"])
    assert r["viewers_connected"] == 0 and r["setup_failures"] == {"dtls-timeout": 1}, r
    assert "needs --dtls openssl" in log, log[-2000:]
    r, log = run_load_test(clients, test_dir, "load-test",
                           [*common, "--viewers", "3", "--duration", "4s", "--dtls", "openssl"])
    sessions = stop_gst_server(server)
    whep = [s for s in sessions if s["kind"] == "whep"]
    assert whep and all(s["certificate_key"] == "rsa" for s in whep), sessions
    assert r["viewers_connected"] == 3, f"{r}\n{log[-3000:]}"
    assert not r["setup_failures"], r
    # 500 kbit/s sent by each session's encoder; header-only accounting.
    assert r["bitrate_bps"] > 100_000, r
    assert r["loss_ratio"] < 0.01, r
    assert r["ttff_ms"]["p99"] is not None, r


def test_whip_ingest_stops_when_the_answer_accepts_no_offered_codec(net, clients, gst_python, test_dir):
    """webrtcbin answering with transceivers it made itself gives H.264
    without profile-level-id, which matches no offered H.264 format: the
    session could send nothing, so whip-ingest says so, DELETEs it and exits
    4, instead of running "live" while every packet is dropped."""
    server, base = start_gst_server(net, clients, gst_python, ["--auto-transceivers"])
    ingest = clients("whip-ingest", [our_binary("whip-ingest"), "test", "--size", "320x240", "--url",
                                     f"{base}/whip/cam"],
                     env={"RUST_LOG": "info", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    code = ingest.proc.wait(30)
    sessions = stop_gst_server(server)
    log = open(ingest.log_path, errors="replace").read()
    assert code == 4, f"exit {code}\n{log[-3000:]}"
    assert "accepts none of the offered codecs" in log and "a=rtpmap:96 H264/90000" in log, log[-3000:]
    assert [s["deleted"] for s in sessions] == [True], sessions
