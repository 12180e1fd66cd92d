#!/usr/bin/env bash
# The test suite: formatting, lints, then every test of the workspace.
# This is the command README.md gives and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export FAULTLINE_CORPUS="${FAULTLINE_CORPUS:-$PWD/../shared/corpus}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
