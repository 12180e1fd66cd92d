#!/usr/bin/env bash
# `faultline serve` benchmark (release build, or FAULTLINE_BIN): a store of N run folders
# (default 1,000; copies of a synthetic valid and invalid run, spread over
# five workloads), then the time of `GET /` — the index of every run — with
# curl: the first request, sent the moment the port opens (it waits for the
# start-up read of every config.json and results.json), and the median of 20
# after it (files re-read only when they change). Target: the
# index of 1,000 runs in under 200 ms. Exit status 0 when the median meets it.
#
#   ci/bench-serve.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench-serve: N must be a positive number" >&2; exit 4; }
if [[ -n "${FAULTLINE_BIN:-}" ]]; then
    bin="$FAULTLINE_BIN"
else
    cargo build --release --locked -p faultline --quiet
    bin="${CARGO_TARGET_DIR:-$PWD/target}/release/faultline"
fi
work="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin" report --demo valid --demo-ops 2000 "$work/valid" >/dev/null
"$bin" report --demo invalid --demo-ops 2000 "$work/invalid" >/dev/null
workloads=(register append set kv counter)
for (( i = 0; i < n; i++ )); do
    src="$work/valid"
    (( i % 4 == 3 )) && src="$work/invalid"
    dir="$work/store/${workloads[$(( i % 5 ))]}/$(printf '20260101T%06d.000Z' "$i")"
    mkdir -p "$dir"
    cp "$src"/{config.json,results.json,history.jsonl,report.html} "$dir/"
done

port=$(( 20000 + RANDOM % 20000 ))
"$bin" serve --store "$work/store" --port "$port" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
done
# The wait above already made the first request; start from a fresh server
# so that the cold figure is a real first read of every run's files.
kill "$pid"; wait "$pid" 2>/dev/null || true
"$bin" serve --store "$work/store" --port "$port" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
time_of() { curl -s -o "$work/index.html" -w '%{time_total}' "http://127.0.0.1:$port/$1"; }
cold=$(time_of "")
warm=()
for _ in $(seq 20); do warm+=("$(time_of "")"); done
median=$(printf '%s\n' "${warm[@]}" | sort -n | sed -n 10p)
filtered=$(time_of "?verdict=invalid")
rows=$(grep -o 'name=run value=' "$work/index.html" | wc -l)
grep -q "$n runs in the store" <(curl -s "http://127.0.0.1:$port/") ||
    { echo "bench-serve: the index does not list $n runs" >&2; exit 1; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
echo "serve index of $n runs: first request $(ms "$cold") ms, median of 20 after it $(ms "$median") ms; filtered (verdict=invalid: $rows rows) $(ms "$filtered") ms"
awk -v s="$median" 'BEGIN { exit !(s < 0.2) }' || { echo "bench-serve: over the 200 ms target" >&2; exit 1; }
