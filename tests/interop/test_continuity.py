"""Publisher continuity with a browser viewer: a Chromium publisher stops
(its page DELETEs the WHIP session) and a new Chromium publisher starts on
the same name; the Chromium viewer never re-POSTs (same WHEP session id on
the server), decodes the new publisher's frames, and its page's EventSource
(WHEP server-sent events extension) got `active`, `inactive`, `active`."""

import time

from harness import chromium_play_argv, chromium_publish_argv, record

STREAM = "restart"


def viewer_ids(sfu):
    try:
        v = sfu.net.get_json(f"{sfu.base}/api/streams/{STREAM}")
    except RuntimeError:
        return []
    return sorted(s.get("id") for s in v.get("viewer_sessions") or [])


def test_browser_viewer_survives_publisher_restart(sfu, clients, node_bin):
    pub1 = clients("chromium-publisher-1", chromium_publish_argv(node_bin, sfu.base, STREAM, duration=10))
    assert pub1.wait_event("live", 40), f"first publisher not live:\n{pub1.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    sfu.wait_live(STREAM)
    viewer = clients("chromium-viewer", chromium_play_argv(node_bin, sfu.base, STREAM, duration=30))
    assert viewer.wait_event("first-frame", 30), f"no first frame:\n{viewer.log_tail()}"
    ids = viewer_ids(sfu)
    assert len(ids) == 1, ids

    r1 = pub1.finish(timeout=40)
    assert r1.get("ok"), f"first publisher: {r1}"
    time.sleep(2)
    assert viewer_ids(sfu) == ids, "the viewer stays connected while the stream has no publisher"

    pub2 = clients("chromium-publisher-2", chromium_publish_argv(node_bin, sfu.base, STREAM, duration=14))
    assert pub2.wait_event("live", 40), f"second publisher not live:\n{pub2.log_tail()}\n--- sfu ---\n{sfu.log_tail()}"
    time.sleep(3)
    assert viewer_ids(sfu) == ids, "same WHEP session after the new publisher arrived (no re-POST)"
    res = viewer.finish(timeout=60)
    pub2.finish(timeout=40)
    record("test_browser_viewer_survives_publisher_restart",
           **{k: res.get(k) for k in ("ok", "width", "height", "framesDecoded", "freezeCount", "events", "error")})
    assert res.get("ok"), f"viewer failed: {res}\n--- sfu ---\n{sfu.log_tail()}"
    # play.mjs samples [ms, width, height, framesDecoded, freezes] every
    # 250 ms: frames stand still while the stream has no publisher (at least
    # the 2 s above), then move again with the second publisher's frames.
    tl = res.get("timeline") or []
    plateau = None
    for i, row in enumerate(tl):
        same = [r for r in tl[i:] if r[3] == row[3]]
        if row[3] > 0 and same and same[-1][0] - row[0] >= 1500:
            plateau = row
            break
    assert plateau, f"no pause while the publisher was away: {tl}"
    frames_end = tl[-1][3]
    assert frames_end > plateau[3] + 30, (
        f"viewer decoded {frames_end - plateau[3]} frames after the publisher restart: {tl[-8:]}")
    names = [e["name"] for e in res.get("events") or [] if e["name"] in ("active", "inactive")]
    assert names[:3] == ["active", "inactive", "active"], res.get("events")
    print(f"viewer decoded {plateau[3]} frames before and {frames_end - plateau[3]} after the restart "
          f"(pause from {plateau[0]} ms)")
