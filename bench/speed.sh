#!/usr/bin/env bash
# Issue 12's harness: the client's cost per item against baselines measured
# in the same run, on the same files, on this machine.
#
#   bench/speed.sh [RECORDS...]      (default: 1000000; ROUNDS=3, IN_FLIGHT=8)
#
# For each size it writes DYNAMODB_JSON exports of the demo data, starts the
# instant DynamoDB stand-in (bench/standin.rs: answers at once, so only the
# client is measured), and then, ROUNDS times:
#   zcat        decompresses every data file (the floor for reading)
#   python      bench/baseline.py: gzip + json.loads + a dict per item
#   plan        singletable plan from the exports (read, parse, transform, tally)
#   migrate     singletable migrate from the exports into the stand-in
#   raw         bench/raw_writer.rs: the same items, pre-built, sent with the
#               same SDK, 25 a call, IN_FLIGHT calls at once (its sending only)
#   BASELINE=path/to/an/older/singletable adds its plan and migrate runs
#   (before-plan, before-migrate), for a before/after in the same run.
# Each process runs under /usr/bin/time (wall, user+sys CPU, peak RSS); the
# raw writer measures its sending with getrusage. The summary gives medians
# and each figure as a ratio to its baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1000000)
rounds=${ROUNDS:-3} in_flight=${IN_FLIGHT:-8}
out=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$out"' EXIT
cargo build --release --quiet --bin singletable --example standin --example raw-writer
bin=target/release/singletable ex=target/release/examples
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
standin() { # log [--record FILE]; sets $port
  "$ex/standin" "${@:2}" >"$out/$1" & pids+=($!)
  until grep -q "^listening on" "$out/$1" 2>/dev/null; do sleep 0.1; done
  port=$(awk '/^listening on/{print $3}' "$out/$1")
}
timed() { # label stdout-file command...
  local label=$1 stdout=$2; shift 2
  /usr/bin/time -f "%e %M %U %S" -o "$out/time" "$@" >"$stdout" 2>"$out/stderr" || {
    # migrate exits 3 when items were dead-lettered within the allowance.
    [ "${label#before-}" = migrate ] || { cat "$out/stderr"; exit 1; }
  }
  echo "$label $size $(cat "$out/time")" >>"$out/results"
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
standin standin.log; plain=$port
standin recorder.log --record "$out/bodies.jsonl"; recorder=$port
for size in "${sizes[@]}"; do
  url="http://127.0.0.1:$plain"
  exp="$out/exp-$size"
  "$bin" demo-data --exports-only --scale "$size" --export-to "$exp" \
    --endpoint-url "$url" --region us-east-1 >"$out/exports-$size.txt" 2>/dev/null
  mapfile -t files < <(find "$exp" -path '*/data/*.json.gz' | sort)
  echo "== $size records: $(du -sh "$exp" | cut -f1) of gzip exports in ${#files[@]} data files"
  margs() { # endpoint round: sets $m, the migrate command's arguments
    m=(migrate --target-table "bench-$size" --exports-file "$out/exports-$size.txt"
      --endpoint-url "$1" --region us-east-1 --quiet --max-in-flight "$in_flight"
      --state "$out/state-$size-$2.json" --dead-letter "$out/dead-$size-$2.jsonl"
      --allow-dead-letters 2% --report "$out/run-$size-$2.json")
  }
  pargs() { # round: sets $p, the plan command's arguments
    p=(plan --exports-file "$out/exports-$size.txt" --endpoint-url "$url" --region us-east-1
      --quiet --report "$out/plan-$size-$1.json" --spill-dir "$out")
  }
  # The raw writer's items: what migrate sends, recorded once (not measured).
  : >"$out/bodies.jsonl"
  margs "http://127.0.0.1:$recorder" record
  "$bin" "${m[@]}" >/dev/null 2>"$out/record.log" || grep -q "dead-lettered within" "$out/record.log" || { cat "$out/record.log"; exit 1; }
  for round in $(seq "$rounds"); do
    timed zcat /dev/null zcat "${files[@]}"
    timed python /dev/null python3 bench/baseline.py "$out/exports-$size.txt"
    pargs "$round"
    timed plan /dev/null "$bin" "${p[@]}"
    margs "$url" "$round"
    timed migrate /dev/null "$bin" "${m[@]}"
    if [ -n "${BASELINE:-}" ]; then
      pargs "before-$round"
      timed before-plan /dev/null "$BASELINE" "${p[@]}"
      margs "$url" "before-$round"
      timed before-migrate /dev/null "$BASELINE" "${m[@]}"
    fi
    "$ex/raw-writer" --endpoint "$url" --bodies "$out/bodies.jsonl" --in-flight "$in_flight" \
      | sed "s/^/raw $size /" >>"$out/results"
    echo "   round $round done"
  done
done
python3 bench/summary.py "$out/results" "$out"
