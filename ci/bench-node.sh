#!/usr/bin/env bash
# Benchmark of faultline-node (not a test): builds in release mode, starts a
# three-node cluster on loopback (fsync on), and runs closed-loop clients doing
# puts for a fixed time at 1, 16 and 64 clients, printing throughput and
# p50/p99 latency. Extra arguments go to node-bench, e.g.
#   ci/bench-node.sh --seconds 5 --clients 64
# With --fuse (first argument), each node's data directory is a
# faultline-diskfs FUSE mount (the disk nemesis's layer; needs /dev/fuse and
# fusermount3), for comparing against plain directories:
#   ci/bench-node.sh --fuse --seconds 10 --clients 16
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target="${CARGO_TARGET_DIR:-$PWD/target}"
fuse=()
if [[ "${1:-}" == "--fuse" ]]; then
  shift
  fuse=(--diskfs-bin "$target/release/faultline-diskfs")
fi
cargo build --release -p faultline-node -p faultline-diskfs --bins
exec "$target/release/node-bench" --node-bin "$target/release/faultline-node" "${fuse[@]}" "$@"
