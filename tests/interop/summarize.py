"""Print the TTFF figures of the latest run from artifacts/results.jsonl."""
import json
import pathlib
import sys

path = pathlib.Path(__file__).resolve().parent / "artifacts" / "results.jsonl"
if not path.exists():
    sys.exit(0)
rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
since = sys.argv[1] if len(sys.argv) > 1 else ""
latest = {}
for r in rows:
    if r.get("time", "") >= since:
        latest[(r["test"], r.get("client"))] = r
print(f"{'test':<50} {'client':<20} {'ttff_ms':>8} {'res':>9} {'frames':>7}  ok")
for (test, client), r in latest.items():
    t = r.get("ttff_ms") if r.get("ttff_ms") is not None else r.get("ttffMs")
    w, h = r.get("width"), r.get("height")
    frames = r.get("frames") if r.get("frames") is not None else r.get("framesDecoded")
    if t is None and frames is None:
        continue
    print(f"{test:<50} {client or '':<20} {t if t is not None else '-':>8} {f'{w}x{h}' if w else '-':>9} "
          f"{frames if frames is not None else '-':>7}  {r.get('ok')}")
