#!/usr/bin/env bash
# The cost of the disk nemesis's FUSE layer (a benchmark, not a test): three
# faultline-node processes on loopback doing closed-loop puts at 16 clients,
# with their data directories on plain directories and on faultline-diskfs
# mounts, alternating REPS times (default 5) so that the load of a shared
# machine falls on both alike. Prints every run, the medians, the machine's
# load, and whether FUSE keeps at least 70 % of the plain throughput (exit 1
# if not). Needs /dev/fuse and fusermount3 (Debian's fuse3).
#   REPS=5 SECONDS_PER_RUN=8 ci/bench-diskfs.sh [--diskfs-arg=--threads=4 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target="${CARGO_TARGET_DIR:-$PWD/target}"
reps="${REPS:-5}"
secs="${SECONDS_PER_RUN:-8}"
cargo build --release -p faultline-node -p faultline-diskfs --bins
bench=("$target/release/node-bench" --node-bin "$target/release/faultline-node" --clients 16 --seconds "$secs")
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
echo "load before: $(uptime)"
for i in $(seq "$reps"); do
  for mode in plain fuse; do
    if [[ $mode == fuse ]]; then
      line=$("${bench[@]}" --diskfs-bin "$target/release/faultline-diskfs" "$@" | awk '$1 == 16')
    else
      line=$("${bench[@]}" | awk '$1 == 16')
    fi
    # clients acked puts/s p50 p99 max errors
    read -r _ _ puts p50 p99 _ errors <<< "$line"
    printf '%-5s run %d: %8s puts/s  p50 %6s ms  p99 %6s ms  errors %s\n' "$mode" "$i" "$puts" "$p50" "$p99" "$errors"
    echo "$mode $puts $p99" >> "$out"
  done
done
echo "load after: $(uptime)"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
plain=$(awk '$1=="plain"{print $2}' "$out" | median)
fuse=$(awk '$1=="fuse"{print $2}' "$out" | median)
plain99=$(awk '$1=="plain"{print $3}' "$out" | median)
fuse99=$(awk '$1=="fuse"{print $3}' "$out" | median)
ratio=$(awk -v f="$fuse" -v p="$plain" 'BEGIN {printf "%.3f", f/p}')
echo "median puts/s: plain $plain, fuse $fuse (fuse/plain $ratio); median p99: plain $plain99 ms, fuse $fuse99 ms"
if awk -v r="$ratio" 'BEGIN {exit !(r >= 0.7)}'; then
  echo "target met: the FUSE layer costs at most 30 % of throughput"
else
  echo "MISSED: the FUSE layer costs more than 30 % of throughput"
  exit 1
fi
