#!/usr/bin/env bash
# Benchmark of faultline-node (not a test): builds in release mode, starts a
# three-node cluster on loopback (fsync on), and runs closed-loop clients doing
# puts for a fixed time at 1, 16 and 64 clients, printing throughput and
# p50/p99 latency. Extra arguments go to node-bench, e.g.
#   ci/bench-node.sh --seconds 5 --clients 64
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p faultline-node --bins
exec "$target/release/node-bench" --node-bin "$target/release/faultline-node" "$@"
