#!/usr/bin/env bash
# The test suite: formatting, lints, then every test of the workspace, with
# every cargo feature (so the etcd gRPC client, feature `etcd-grpc`, is built
# and tested too).
# This is the command README.md gives and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export FAULTLINE_CORPUS="${FAULTLINE_CORPUS:-$PWD/../shared/corpus}"
# etcd-client's build script runs protoc on its .proto files, which import
# the well-known types: Debian ships them in libprotobuf-dev.
if [[ -z "${PROTOC:-}" ]] && { ! command -v protoc >/dev/null 2>&1 ||
  [[ ! -e /usr/include/google/protobuf/descriptor.proto ]]; }; then
  echo "test.sh: installing protoc (protobuf-compiler libprotobuf-dev) for --all-features"
  apt-get update && apt-get install -y protobuf-compiler libprotobuf-dev
fi
cargo fmt --all -- --check
# Lints over every target with every feature. The default build differs only
# by one constant (harness/src/sut/protocol/mod.rs) yet a second lint pass
# recompiles every dependency (features unify differently without tonic), two
# minutes on two cores: the nightly's release build (default features)
# compiles it instead. FAULTLINE_LINT_DEFAULT=1 lints it here too.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
if [[ "${FAULTLINE_LINT_DEFAULT:-0}" == 1 ]]; then
  cargo clippy -p faultline --all-targets --locked -- -D warnings
fi
cargo test --workspace --all-features --locked
# The report and serve pages in a real browser (headless Chromium, 1280 px):
# no console error, no sideways scrolling; with the stored invalid run of
# every workload and deliberate mistake.
FAULTLINE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/faultline" \
  ci/render-report.sh target/report-render harness/tests/data/violations/*/
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
