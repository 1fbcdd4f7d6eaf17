# Sourced by the bench scripts: builds the release binary (and the examples
# named in $EXAMPLES) and starts `singletable demo --serve` (the embedded
# DynamoDB) with $1 demo items on $port (default: a free loopback port;
# more demo flags in $DEMO_ARGS), stopping it on exit and removing $out
# unless $KEEP is set. Sets $bin, $out, $port and $url; start_server N and
# stop_server give a fresh server (dynoxide slows as its database grows, so
# two binaries compared in one run each get their own); timed LABEL CMD...
# runs CMD under /usr/bin/time into $out/time-LABEL (wall s, user s, sys s,
# peak KB), its output in $out/LABEL.out and $out/LABEL.err.
out=$(mktemp -d)
port=${port:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
url="http://127.0.0.1:$port"
examples=()
for e in ${EXAMPLES:-}; do examples+=(--example "$e"); done
cargo build --release --quiet --bin singletable "${examples[@]}"
bin=target/release/singletable
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
start_server() {
  # shellcheck disable=SC2086 # DEMO_ARGS holds several flags
  "$bin" demo --serve --quiet --port "$port" --scale "$1" ${DEMO_ARGS:-} --out "$out/demo" >"$out/demo.log" 2>&1 &
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
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$out/time-$label" "$@" >"$out/$label.out" 2>"$out/$label.err" || true
}
trap 'stop_server; [ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
start_server "$1"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
