#!/usr/bin/env bash
# Issue 14's figures: how fast `follow` catches up with a backlog in the
# streams, and how far behind it trails an application that keeps writing,
# against dynoxide (the embedded engine of `singletable demo --serve`).
#
#   bench/follow.sh [SCALE]     (default 20000 items; BACKLOG=20000 changes,
#                                RATE=400 changes/s for STEADY=30 s)
#
# 1. copy      `migrate --create-table` of the legacy tables into a second
#              table: the baseline, items/s and CPU per item, same run.
# 2. catch-up  the demo application (bench/churn.rs) makes BACKLOG changes
#              as fast as it can, no follow running; then `follow --from
#              <before them> --until-caught-up`: records/s and CPU per record.
# 3. steady    `follow --max-lag MAXLAG` (default 5s) runs while the
#              application makes RATE changes a second for STEADY seconds,
#              and stamps one user of its own with the time every 250 ms:
#              the delay until each stamp is in the target is the lag, end
#              to end. The follow's progress line every second gives the
#              records read but not applied. After the last change: the time
#              until `follow --until-caught-up` (resumed) says caught up.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-20000} backlog=${BACKLOG:-20000} rate=${RATE:-400} steady=${STEADY:-30} maxlag=${MAXLAG:-5s}
EXAMPLES=churn DEMO_ARGS="--dirty-rate 0"
. bench/serve.sh "$scale"
echo "work folder: $out"
churn=target/release/examples/churn
for t in users credits personalities sessions messages analytics daily-stats; do
  aws dynamodb update-table --endpoint-url "$url" --table-name "ai-girlfriend-$t" \
    --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES >/dev/null
done
common=(--endpoint-url "$url" --region us-east-1)
# 1. The baseline copy.
timed copy "$bin" migrate --target-table bench-copy --create-table --quiet "${common[@]}" \
  --state "$out/copy-state.json" --dead-letter "$out/copy-dead.jsonl" --report "$out/copy.json"
# 2. A backlog, then the catch-up.
from=$(date -u +%FT%T.%3NZ)
"$churn" --endpoint "$url" --changes "$backlog" >"$out/backlog.json"
timed catchup "$bin" follow --from "$from" --until-caught-up --quiet "${common[@]}" \
  --state "$out/follow-state.json" --dead-letter "$out/follow-dead.jsonl" --report "$out/catchup.json"
# 3. Steady writes under a running follow, then the time to catch up.
"$bin" follow --progress-interval 1s --max-lag "$maxlag" "${common[@]}" --state "$out/follow-state.json" \
  --dead-letter "$out/follow-dead.jsonl" --report "$out/steady.json" >"$out/steady.out" 2>"$out/steady.err" & follower=$!
sleep 2
"$churn" --endpoint "$url" --changes $((rate * steady)) --per-second "$rate" --first-round 1000 \
  --probe ai-girlfriend-table >"$out/steady-churn.json"
last=$(date +%s.%N)
sleep 2
kill -INT "$follower"; wait "$follower" || true
"$bin" follow --until-caught-up --max-lag 1s --quiet "${common[@]}" --state "$out/follow-state.json" \
  --dead-letter "$out/follow-dead.jsonl" --report "$out/final.json" >/dev/null 2>&1
done_at=$(date +%s.%N)
python3 - "$out" "$last" "$done_at" "$maxlag" <<'PY'
import json, re, statistics, sys
out, last, done_at = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def t(label):
    # The last line: a non-zero exit adds one before it.
    wall, user, sys_, rss = open(f"{out}/time-{label}").read().splitlines()[-1].split()
    return float(wall), float(user) + float(sys_), int(rss) // 1024
def report(name):
    return json.load(open(f"{out}/{name}.json"))
copy, catch = report("copy"), report("catchup")
cw, cc, cr = t("copy"); fw, fc, fr = t("catchup")
items, records = copy["totals"]["written"], catch["totals"]["read"]
print(f"copy      {items:>7} items   {items/cw:>8.0f} items/s   {cc/items*1e6:>6.1f} us CPU/item     peak {cr} MB")
print(f"catch-up  {records:>7} records {records/fw:>8.0f} records/s {fc/records*1e6:>6.1f} us CPU/record   peak {fr} MB")
print(f"catch-up / copy: {(records/fw)/(items/cw):.2f}x the rate, {(fc/records)/(cc/items):.2f}x the CPU per record")
behind = []
for line in open(f"{out}/steady.err"):
    if "progress:" in line:
        behind.append(sum(int(x) for x in re.findall(r"(\d+) behind", line)))
churn = json.load(open(f"{out}/steady-churn.json"))
delays = sorted(churn["probe_delays"])
print(f"steady: {churn['changes']} changes in {churn['seconds']:.1f} s ({churn['changes']/churn['seconds']:.0f}/s), follow --max-lag {sys.argv[4]}")
if delays:
    p95 = delays[int(0.95 * (len(delays) - 1))]
    print(f"  lag end to end ({len(delays)} stamps): median {statistics.median(delays):.2f} s, p95 {p95:.2f} s, max {delays[-1]:.2f} s")
if behind:
    print(f"  records read, not applied ({len(behind)} samples): median {statistics.median(behind):.0f}, max {max(behind)}")
steady, final = report("steady"), report("final")
more = final["totals"]["read"] - steady["totals"]["read"]
print(f"after the last change: caught up (within 1 s) {done_at - last:.1f} s later (2 s of it waiting, then a resumed follow's start); the resumed follow applied {more} more")
dead = sum(report(n)["totals"]["dead_lettered"] for n in ("catchup", "final"))
print(f"dead letters: {dead}")
PY
