# Sourced by the bench scripts: builds the release binary and starts
# `singletable demo --serve` (the embedded DynamoDB) with $1 demo items on
# $port, stopping it on exit. Sets $bin and $out; start_server N and
# stop_server give a fresh server (dynoxide slows as its database grows, so
# two binaries compared in one run each get their own).
out=$(mktemp -d)
cargo build --release --quiet
bin=target/release/singletable
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
start_server() {
  "$bin" demo --serve --quiet --port "$port" --scale "$1" --out "$out/demo" >"$out/demo.log" 2>&1 &
  server=$!
  until grep -q "^serving" "$out/demo.log"; do
    kill -0 $server 2>/dev/null || { cat "$out/demo.log"; exit 1; }
    sleep 1
  done
}
stop_server() {
  kill -INT $server 2>/dev/null
  wait $server 2>/dev/null || true
}
trap 'stop_server; rm -rf "$out"' EXIT
start_server "$1"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
