#!/usr/bin/env bash
# Migration and verification throughput and peak memory, on this machine.
#
#   bench/run.sh [SCALE]      (default 100000 items)
#
# 1. `singletable demo --serve` starts the embedded DynamoDB, loads SCALE
#    legacy items and serves them on a loopback port.
# 2. A second `singletable` process migrates them into a fresh table and
#    verifies it, each under /usr/bin/time, so the numbers are the tool's
#    alone (not the embedded database's).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-100000}
port=${PORT:-18765}
. bench/serve.sh "$scale"

common=(--mapping mappings/ai-girlfriend.toml --target-table bench-target
        --endpoint-url "http://127.0.0.1:$port" --region us-east-1 --quiet)

echo "== migrate, $scale legacy items"
/usr/bin/time -f "wall %e s, peak RSS %M KB, user %U s, sys %S s" \
  "$bin" migrate "${common[@]}" --create-table --report "$out/run.json" --dead-letter "$out/dead.jsonl" --state "$out/state.json" \
    --allow-dead-letters 1% 2>&1 | tail -n 12
python3 - "$out/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
print(f"read {t['read']} written {t['written']} dead {t['dead_lettered']} in {r['duration_seconds']:.2f} s "
      f"= {t['read'] / r['duration_seconds']:.0f} items/s")
PY
echo "== verify, sample 1000 per entity"
/usr/bin/time -f "wall %e s, peak RSS %M KB, user %U s, sys %S s" \
  "$bin" verify "${common[@]}" --sample 1000 --report "$out/verify.json" 2>&1 | tail -n 2
echo "== verify --full (every record, digests of both sides)"
/usr/bin/time -f "wall %e s, peak RSS %M KB, user %U s, sys %S s" \
  "$bin" verify "${common[@]}" --full --report "$out/verify-full.json" 2>&1 | tail -n 2
