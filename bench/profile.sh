#!/usr/bin/env bash
# Where the client's CPU goes: `perf record` (DWARF call graphs) of `plan`
# and `migrate` from local exports into the instant stand-in, printed as the
# inclusive share of each stage of the pipeline.
#
#   bench/profile.sh [RECORDS] [BINARY...]   (default: 100000, target/release/singletable)
#
# Several binaries (an older build first) give profiles side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-100000}; shift || true
bins=("$@"); [ ${#bins[@]} -gt 0 ] || bins=(target/release/singletable)
out=$(mktemp -d)
trap 'kill $standin 2>/dev/null; rm -rf "$out"' EXIT
cargo build --release --quiet --bin singletable --example standin
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
target/release/examples/standin >"$out/standin.log" & standin=$!
until grep -q "^listening on" "$out/standin.log" 2>/dev/null; do sleep 0.1; done
url="http://127.0.0.1:$(awk '/^listening on/{print $3}' "$out/standin.log")"
target/release/singletable demo-data --exports-only --scale "$size" --export-to "$out/exp" \
  --endpoint-url "$url" --region us-east-1 >"$out/exports.txt" 2>/dev/null
# Stages, as symbol substrings (inclusive share: the function and what it calls).
stages='export::parse_line|transform::transform|template::Template::render|transform::validate
|serde_json::value::de::<impl serde_core::de::Deserialize for serde_json::value::Value>::deserialize
|miniz_oxide::inflate::core::decompress_fast|sources::proof::prove|plan::find_collisions
|plan::Worker::write|sinks::writer::Shared::write_with_retries|BatchWriteItemRequestSerializer
|hyper::proto::h1::dispatch::Dispatcher|seen::SeenKeys::insert|item::wire_bytes
|mi_free|_mi_malloc_generic|clear_page_erms'
for b in "${bins[@]}"; do
  for job in plan migrate; do
    args=(--exports-file "$out/exports.txt" --endpoint-url "$url" --region us-east-1 --quiet)
    case $job in
      plan) args=(plan "${args[@]}" --report "$out/r.json" --spill-dir "$out") ;;
      migrate) args=(migrate "${args[@]}" --target-table t --state "$out/s-$RANDOM.json"
        --dead-letter "$out/d.jsonl" --allow-dead-letters 2% --report "$out/r.json") ;;
    esac
    perf record -q -e task-clock -c 250000 --call-graph dwarf,16384 -o "$out/perf.data" \
      "$b" "${args[@]}" >/dev/null 2>&1 || true
    echo "== $b $job ($size records): inclusive share of CPU"
    perf report -i "$out/perf.data" --children --sort symbol -g none 2>/dev/null \
      | grep -E "$(tr -d '\n' <<<"$stages")" | awk '{printf "  %6s  ", $1; $1=$2=$3=""; sub(/ - -$/, ""); print substr($0, 4, 90)}' \
      | awk '!seen[substr($0, 11)]++'
  done
done
