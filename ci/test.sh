#!/usr/bin/env bash
# The test suite: formatting, lints, then every test of the workspace.
# This is the command README.md gives and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export FAULTLINE_CORPUS="${FAULTLINE_CORPUS:-$PWD/../shared/corpus}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The nightly workflow must be valid YAML whose matrix runs shards and merges them.
python3 - <<'PY'
import sys
try:
    import yaml
except ImportError:
    import subprocess
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "pyyaml"])
    import yaml
wf = yaml.safe_load(open(".github/workflows/nightly.yml"))
jobs = wf["jobs"]
assert jobs["matrix"]["strategy"]["matrix"]["shard"], "matrix shards"
assert jobs["merge"]["needs"] == "matrix", "merge after the matrix"
assert jobs["mutation"]["strategy"]["matrix"]["shard"], "mutation shards"
print(f"nightly.yml: {len(jobs)} jobs, {len(jobs['matrix']['strategy']['matrix']['shard'])} shards")
PY
