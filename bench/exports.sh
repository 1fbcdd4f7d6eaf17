#!/usr/bin/env bash
# Migration from local DYNAMODB_JSON exports: throughput and peak memory at
# two scales, to show memory does not grow with the export.
#
#   bench/exports.sh [SCALE...]      (default: 100000 300000)
#
# demo-data --exports-only writes the exports (no tables); an embedded
# DynamoDB (`demo --serve`, tiny) is the target; a second singletable
# process migrates each export under /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
scales=("$@"); [ ${#scales[@]} -gt 0 ] || scales=(100000 300000)
port=${PORT:-18766}
. bench/serve.sh 100
for scale in "${scales[@]}"; do
  "$bin" demo-data --exports-only --scale "$scale" --export-to "$out/exp-$scale" \
    --endpoint-url "http://127.0.0.1:$port" --region us-east-1 >"$out/exports-$scale.txt" 2>/dev/null
  echo "== migrate from exports, scale $scale ($(du -sh "$out/exp-$scale" | cut -f1) of gzip exports)"
  /usr/bin/time -f "wall %e s, peak RSS %M KB, user %U s, sys %S s" \
    "$bin" migrate --mapping mappings/ai-girlfriend.toml --target-table "bench-exp-$scale" --create-table \
      --exports-file "$out/exports-$scale.txt" --endpoint-url "http://127.0.0.1:$port" --region us-east-1 --quiet \
      --report "$out/run-$scale.json" --dead-letter "$out/dead-$scale.jsonl" 2>&1 | tail -n 1
  python3 - "$out/run-$scale.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
print(f"read {t['read']} written {t['written']} dead {t['dead_lettered']} in {r['duration_seconds']:.1f} s = {t['read'] / r['duration_seconds']:.0f} items/s")
PY
done
