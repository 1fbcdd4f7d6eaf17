#!/usr/bin/env bash
# `plan` from local DYNAMODB_JSON exports at growing scales: wall time, peak
# memory and CPU, to show memory stays flat as the data grows (collisions
# and partition-key sums are spilled to partitioned temp files).
#
#   bench/plan.sh [SCALE...]      (default: 100000 300000 1000000)
#
# BASELINE=path/to/another/singletable runs that binary too, on the same
# exports, before ours; ROUNDS=N repeats each pair (default 1).
# demo-data --exports-only writes the exports against a tiny embedded
# DynamoDB (it creates no table); plan reads them under /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
scales=("$@"); [ ${#scales[@]} -gt 0 ] || scales=(100000 300000 1000000)
port=${PORT:-18767}
. bench/serve.sh 100
run() { # label binary scale
  local label=$1 b=$2 scale=$3
  /usr/bin/time -f "%e %M %U" -o "$out/time-$label-$scale" \
    "$b" plan --mapping mappings/ai-girlfriend.toml --exports-file "$out/exports-$scale.txt" \
      --endpoint-url "http://127.0.0.1:$port" --region us-east-1 --quiet \
      --report "$out/plan-$label-$scale.json" --spill-dir "$out" >/dev/null 2>&1
  read -r wall rss user <"$out/time-$label-$scale"
  python3 - "$out/plan-$label-$scale.json" "$label" "$scale" "$wall" "$rss" "$user" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); t = p["totals"]
label, scale = sys.argv[2], sys.argv[3]
wall, rss, user = float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
print(f"{label:>9} scale {scale:>8}: read {t['read']} wall {wall:.1f} s = {t['read'] / wall:.0f} records/s, "
      f"peak RSS {rss / 1024:.0f} MB, CPU {user:.2f} s ({user / wall:.2f} cores, {user / t['read'] * 1e6:.1f} us/record), "
      f"write units {p['write_units']['total']}, collisions {p['collisions']['count']}")
PY
}
for scale in "${scales[@]}"; do
  "$bin" demo-data --exports-only --scale "$scale" --export-to "$out/exp-$scale" \
    --endpoint-url "http://127.0.0.1:$port" --region us-east-1 >"$out/exports-$scale.txt" 2>/dev/null
  for round in $(seq "${ROUNDS:-1}"); do
    if [ -n "${BASELINE:-}" ]; then run baseline "$BASELINE" "$scale"; fi
    run current "$bin" "$scale"
  done
done
