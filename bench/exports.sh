#!/usr/bin/env bash
# Migration from local DYNAMODB_JSON exports: throughput and peak memory at
# two scales, to show memory does not grow with the export.
#
#   bench/exports.sh [SCALE...]      (default: 100000 300000)
#
# demo-data --exports-only writes the exports (no tables); an embedded
# DynamoDB (`demo --serve`, tiny) is the target; a second singletable
# process migrates each export under /usr/bin/time. BASELINE=path/to/an/
# older/singletable runs that binary too, on the same exports and server.
set -euo pipefail
cd "$(dirname "$0")/.."
scales=("$@"); [ ${#scales[@]} -gt 0 ] || scales=(100000 300000)
port=${PORT:-18766}
. bench/serve.sh 100
# BASELINE=path/to/an/older/singletable also runs that binary on the same
# exports against the same server, and prints its figures beside ours.
run() { # label binary scale
  local label=$1 b=$2 scale=$3 allow=()
  # The demo's dirty rows are dead-lettered on purpose (binaries before
  # exit code 3 have no such flag).
  if "$b" migrate --help | grep -q allow-dead-letters; then allow=(--allow-dead-letters 1%); fi
  # Binaries that keep a state keep it with the run's other files.
  if "$b" migrate --help | grep -q -- --state; then allow+=(--state "$out/state-$label-$scale.json"); fi
  /usr/bin/time -f "%e %M %U" -o "$out/time-$label-$scale" \
    "$b" migrate --mapping mappings/ai-girlfriend.toml --target-table "bench-$label-$scale" --create-table \
      --exports-file "$out/exports-$scale.txt" --endpoint-url "http://127.0.0.1:$port" --region us-east-1 --quiet \
      --report "$out/run-$label-$scale.json" --dead-letter "$out/dead-$label-$scale.jsonl" \
      "${allow[@]}" >/dev/null 2>&1 || true
  read -r wall rss user <"$out/time-$label-$scale"
  python3 - "$out/run-$label-$scale.json" "$label" "$wall" "$rss" "$user" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["totals"]
label, wall, rss, user = sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
print(f"{label:>9}: read {t['read']} written {t['written']} dead {t['dead_lettered']} "
      f"wall {wall:.1f} s = {t['read'] / wall:.0f} items/s, peak RSS {rss / 1024:.0f} MB, "
      f"client CPU {user:.2f} s = {user / t['read'] * 1e6:.1f} us/item, exit {r.get('exit_code', 'n/a')}")
PY
}
for scale in "${scales[@]}"; do
  "$bin" demo-data --exports-only --scale "$scale" --export-to "$out/exp-$scale" \
    --endpoint-url "http://127.0.0.1:$port" --region us-east-1 >"$out/exports-$scale.txt" 2>/dev/null
  echo "== migrate from exports, scale $scale ($(du -sh "$out/exp-$scale" | cut -f1) of gzip exports)"
  if [ -n "${BASELINE:-}" ]; then
    run baseline "$BASELINE" "$scale"
    stop_server; start_server 100
  fi
  run current "$bin" "$scale"
  stop_server; start_server 100
done
