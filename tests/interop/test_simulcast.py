"""Chromium publishes three simulcast layers (VP8, h/m/l); two Chromium
viewers watch (publisher at 1280x720, so Chromium sends all three layers). One viewer's downlink is throttled with tc (an htb class on
the server's veth matching that viewer's UDP port): the server's send-side
estimate for it falls and it settles on a lower layer while the other plays
the top one. The throttle is then lifted and the first climbs. Finally the
unthrottled viewer picks the low layer through the page's layer picker (WHEP
layer extension) and its picture changes size with no freeze."""

import time

from harness import chromium_play_argv, chromium_publish_argv, record
from netns import sh

STREAM = "sc"
LIMIT = "250kbit"


def viewer_sessions(sfu):
    try:
        v = sfu.net.get_json(f"{sfu.base}/api/streams/{STREAM}")
    except RuntimeError:
        return []
    return v.get("viewer_sessions") or []


def wait_for(pred, timeout, step=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(step)
    return pred()


def layer_of(sfu, port):
    for s in viewer_sessions(sfu):
        if str(s.get("address", "")).endswith(f":{port}"):
            return s.get("layer")
    return None


def layers_live(sfu):
    try:
        v = sfu.net.get_json(f"{sfu.base}/api/streams/{STREAM}")
    except RuntimeError:
        return []
    return [(l.get("rid"), l.get("width"), l.get("bitrate_bps", l.get("bitrate"))) for l in v.get("layers") or []
            if l.get("active", True)]


def tc(net, *args):
    return sh("ip", "netns", "exec", net.srv, "tc", *args)


def test_chromium_simulcast_throttled_viewer_and_layer_switch(sfu, net, clients, node_bin):
    pub = clients("chromium-publisher", chromium_publish_argv(
        node_bin, sfu.base, STREAM, duration=100,
        extra=["--codec", "VP8", "--query", "simulcast=1&resolution=1280x720"]))
    assert pub.wait_event("live", 40), f"publisher not live:\n{pub.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    sfu.wait_live(STREAM)
    # Chromium enables its upper layers as its own estimate ramps up.
    layers = wait_for(lambda: (lambda ls: ls if len(ls) == 3 else None)(layers_live(sfu)), 40)
    assert layers and len(layers) == 3, f"three live layers: {layers_live(sfu)}\n{sfu.log_tail()}"

    # The throttled viewer first, so its UDP port is the only one in the list.
    slow = clients("chromium-throttled", chromium_play_argv(node_bin, sfu.base, STREAM, duration=60, extra=[
        "--timeout", "20"]))
    sess = wait_for(lambda: [s for s in viewer_sessions(sfu) if s.get("address")], 25)
    assert sess, f"throttled viewer never showed up:\n{slow.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    port = sess[0]["address"].rsplit(":", 1)[1]
    tc(net, "qdisc", "add", "dev", net.vs, "root", "handle", "1:", "htb")
    tc(net, "class", "add", "dev", net.vs, "parent", "1:", "classid", "1:20", "htb", "rate", LIMIT, "ceil", LIMIT)
    tc(net, "filter", "add", "dev", net.vs, "protocol", "ip", "parent", "1:", "prio", "1", "u32",
       "match", "ip", "dport", port, "0xffff", "flowid", "1:20")

    fast = clients("chromium-unthrottled", chromium_play_argv(
        node_bin, sfu.base, STREAM, duration=45, extra=["--switch-layer", "l", "--switch-at", "32"]))

    # Throttled: off the top layer; unthrottled: the top layer.
    settled = wait_for(lambda: layer_of(sfu, port) in ("m", "l") and
                       any(s.get("layer") == "h" for s in viewer_sessions(sfu)), 25)
    throttled_layer = layer_of(sfu, port)
    snapshot = viewer_sessions(sfu)
    assert settled, f"throttled viewer on {throttled_layer}, sessions {snapshot}\n--- sfu ---\n{sfu.log_tail()}"

    # Lift the limit: the throttled viewer climbs above where it was.
    tc(net, "qdisc", "del", "dev", net.vs, "root")
    order = {"l": 0, "m": 1, "h": 2}
    climbed = wait_for(lambda: order.get(layer_of(sfu, port), -1) > order[throttled_layer], 25)
    after = layer_of(sfu, port)

    res = fast.finish(timeout=90)
    sres = slow.finish(timeout=60)
    record("test_chromium_simulcast_throttled_viewer_and_layer_switch", layers=layers,
           throttled_layer=throttled_layer, after_lift=after, sessions=snapshot,
           **{k: res.get(k) for k in ("ok", "width", "height", "firstWidth", "firstHeight", "freezeCount",
                                      "freezeSeconds", "framesDropped", "framesDecoded", "switchedAtMs", "error")})
    assert climbed, f"throttled viewer stayed on {after} after the limit lifted\n--- sfu ---\n{sfu.log_tail()}"
    assert sres.get("ok"), f"throttled viewer failed: {sres}"
    assert res.get("ok"), f"unthrottled viewer failed: {res}\n--- sfu ---\n{sfu.log_tail()}"
    # An upper layer (automatic choice) before the switch, the low one (the
    # publisher's h/4) after.
    before = res.get("beforeSwitch") or {}
    sizes = {rid: w for rid, w, _ in layers_live(sfu)}
    assert before.get("width") in (sizes.get("h"), sizes.get("m")), (before, sizes)
    assert res["width"] == sizes.get("l") and res["width"] < before["width"], (res, sizes)
    # No freeze from the switch: Chromium counts none after it.
    assert res.get("freezeCount", 0) == before.get("freezeCount", 0), res
    print(f"simulcast: layers {layers}; throttled viewer {throttled_layer} -> {after} after lifting; "
          f"unthrottled {before.get('width')}x{before.get('height')} -> {res['width']}x{res['height']}, "
          f"freezes {res.get('freezeCount')}")
