# Sourced by the bench scripts: builds the release binary and starts
# `singletable demo --serve` (the embedded DynamoDB) with $1 demo items on
# $port, stopping it on exit. Sets $bin and $out.
out=$(mktemp -d)
cargo build --release --quiet
bin=target/release/singletable
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
"$bin" demo --serve --quiet --port "$port" --scale "$1" --out "$out/demo" >"$out/demo.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$out"' EXIT
until grep -q "^serving" "$out/demo.log"; do
  kill -0 $server 2>/dev/null || { cat "$out/demo.log"; exit 1; }
  sleep 1
done
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
