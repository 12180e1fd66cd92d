#!/usr/bin/env bash
# Checker benchmark (release build): per-file check time (one thread, parse
# excluded, minimum of 3 runs) and peak memory over the reference corpus, the
# totals against the targets, then a generated 100,000-op kv history (100 keys,
# 32 processes) checked by `faultline check` on 2 threads, and generated
# one-key histories with many indeterminate (info) ops, as runs under kill and
# partition faults produce (10,000 ops, 10 processes, 5 % info; one thread):
# valid ones and ones with a stale read must be decided (not Unknown).
# Exit status: 0 when every target is met, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${FAULTLINE_CORPUS:-$PWD/../shared/corpus}"
RUNS="${RUNS:-3}"
cargo build --release --locked -p faultline -p faultline-checkers --example bench_checker
TARGET="${CARGO_TARGET_DIR:-$PWD/target}/release"
status=0
"$TARGET/examples/bench_checker" corpus "$CORPUS" "$RUNS" || status=1

echo
for model in register cas-register kv append; do
  "$TARGET/examples/bench_checker" info "$model" 10000 10 50 1 - 60 || status=1
done
for model in register cas-register kv; do
  "$TARGET/examples/bench_checker" info "$model" 10000 10 50 1 stale 60 || status=1
done
# 32 processes: stale reads are decided by the zone check.
for model in register cas-register; do
  "$TARGET/examples/bench_checker" info "$model" 10000 32 50 1 stale 60 || status=1
done

echo
GEN="$(mktemp -d)"
trap 'rm -rf "$GEN"' EXIT
"$TARGET/examples/bench_checker" gen "$GEN/100k.jsonl" 100000 100 32 1
/usr/bin/time -f "%M" -o "$GEN/rss" "$TARGET/faultline" check --model kv --threads 2 --json "$GEN/100k.jsonl" > "$GEN/out.json" || true
ms=$(jq '.files[0].check_ms' "$GEN/out.json")
verdict=$(jq -r '.files[0].verdict' "$GEN/out.json")
echo "generated 100k ops / 100 keys / 32 processes, 2 threads: ${ms} ms, ${verdict}, peak $(cat "$GEN/rss") KiB (target <= 5000 ms)"
if ! jq -e '.files[0].check_ms <= 5000 and .files[0].verdict == "valid"' "$GEN/out.json" > /dev/null; then
  echo "MISSED: 100k-op target"
  status=1
fi
exit $status
