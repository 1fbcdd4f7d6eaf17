#!/usr/bin/env bash
# Issue 17's figures: `verify --full --repair` after the source moved,
# against dynoxide (the embedded engine of `singletable demo --serve`).
#
#   bench/repair.sh [SCALE]     (default 50000 items; CHANGES=50000 per
#                                round of the demo application)
#
# 1. migrate   the demo's own `migrate --create-table` (its report): the
#              baseline rate, items/s.
# 2. verify    the application (bench/churn.rs) makes CHANGES changes
#              (updates, deletes, inserts, sessions moved to another user);
#              `verify --full` names the differences: the read-only cost.
# 3. bounded   `verify --full --repair` with the default collect limit
#              (20,000 records held at a time): rounds, keys repaired/s, peak
#              memory, and the second full verification's verdict.
# 4. unbounded the application makes CHANGES more; the repair again with
#              a collect limit above every difference (all held at once):
#              peak memory, to compare with 3.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-50000} changes=${CHANGES:-50000}
EXAMPLES=churn DEMO_ARGS="--dirty-rate 0"
. bench/serve.sh "$scale"
echo "work folder: $out"
churn=target/release/examples/churn
common=(--endpoint-url "$url" --region us-east-1 --quiet)
"$churn" --endpoint "$url" --changes "$changes" --first-round 2 >"$out/churn1.json"
timed verify "$bin" verify --full "${common[@]}" --report "$out/verify.json"
timed bounded "$bin" verify --full --repair "${common[@]}" --report "$out/bounded.json" \
  --repairs "$out/bounded.jsonl" --dead-letter "$out/bounded-dead.jsonl"
"$churn" --endpoint "$url" --changes "$changes" --first-round 1000 >"$out/churn2.json"
timed unbounded "$bin" verify --full --repair "${common[@]}" --report "$out/unbounded.json" \
  --repairs "$out/unbounded.jsonl" --dead-letter "$out/unbounded-dead.jsonl" --collect-limit 100000000
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def t(label):
    # The last line: a non-zero exit adds one before it.
    wall, user, sys_, rss = open(f"{out}/time-{label}").read().splitlines()[-1].split()
    return float(wall), float(user) + float(sys_), int(rss) // 1024
def j(name):
    return json.load(open(f"{out}/{name}.json"))
m = j("demo/migrate-report")
mw = m["duration_seconds"] if "duration_seconds" in m else None
items = m["totals"]["written"]
vw, vc, vr = t("verify")
v = j("verify")
src = sum(e["source_items"] for e in v["entities"])
print(f"data: {items} items migrated; {src} source records after the changes")
if mw:
    print(f"migrate (the demo's): {items/mw:.0f} items/s")
print(f"verify --full:  {vw:6.1f} s, {vc:6.1f} s CPU, peak {vr} MB")
for label in ("bounded", "unbounded"):
    w, c, r = t(label)
    rep = j(label)
    keys = rep["puts_missing"] + rep["puts_changed"] + rep["deletes_extra"] + rep["deletes_orphan"]
    after = (rep.get("after") or {}).get("verdict")
    dead = rep["writes"]["totals"]["dead_lettered"] if rep.get("writes") else 0
    print(f"{label:9} repair: {keys} keys ({rep['puts_missing']} missing, {rep['puts_changed']} changed, {rep['deletes_extra']} extra) "
          f"in {rep['rounds']} round(s), {w:6.1f} s ({keys/w:.0f} keys/s), {c:6.1f} s CPU, peak {r} MB; after: {after}; dead letters {dead}; exit {rep['exit_code']}")
bw, _, br = t("bounded"); uw, _, ur = t("unbounded")
print(f"bounded / unbounded: {br/ur:.2f}x the peak memory, {bw/uw:.2f}x the time; bounded repair / verify --full: {bw/vw:.2f}x the time")
PY
