#!/usr/bin/env bash
#: ci/mutation.sh — the mutation score of the harness: cargo-mutants lists
#: the mutants of the Raft core and the node (raft.rs, log.rs, driver.rs,
#: storage.rs, kv.rs); a seeded sample of them is built one at a time, and
#: each viable mutant faces a fixed battery of *default* `faultline run`s (no
#: per-mutant settings: exploration draws each run's profile from its seed).
#: A mutant is caught by the harness when a run ends non-valid (invalid,
#: unknown, a cluster that fails, or a hang); otherwise `cargo test` of the
#: two crates is tried; otherwise it is missed. Writes results.tsv,
#: mutation.md and junit.xml (misses need a reason in ci/mutation-notes.tsv).
#:
#: Usage: ci/mutation.sh [--sample N] [--seed S] [--shard K/N] [--only REGEX] [--out DIR]
#:        ci/mutation.sh --merge OUT SHARD_DIR...
#:   --sample N   mutants to sample (default 50)
#:   --seed S     the sample's seed (default 1)
#:   --shard K/N  only the K-th of N slices of the sample
#:   --only REGEX only the sampled mutants whose name matches (to re-run misses)
#:   --out DIR    output directory (default mutation-out)
#: Needs cargo-mutants (`cargo install cargo-mutants --locked`).
set -euo pipefail

sample=50
seed=1
shard_k=1
shard_n=1
out="mutation-out"
only=""
merge=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sample) sample="${2:?--sample needs N}"; shift 2 ;;
        --seed) seed="${2:?--seed needs S}"; shift 2 ;;
        --shard)
            [[ "${2:-}" =~ ^([1-9][0-9]*)/([1-9][0-9]*)$ ]] || { echo "mutation.sh: --shard ${2:-}: expected K/N" >&2; exit 4; }
            shard_k=${BASH_REMATCH[1]}; shard_n=${BASH_REMATCH[2]}; shift 2 ;;
        --out) out="${2:?--out needs DIR}"; shift 2 ;;
        --only) only="${2:?--only needs REGEX}"; shift 2 ;;
        --merge) shift; merge=("$@"); break ;;
        -h|--help) sed -n 's/^#: \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "mutation.sh: unknown option $1 (see --help)" >&2; exit 4 ;;
    esac
done
[[ "$sample" =~ ^[1-9][0-9]*$ ]] || { echo "mutation.sh: --sample $sample: expected a positive number" >&2; exit 4; }

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
files=(crates/raft/src/raft.rs crates/raft/src/log.rs crates/node/src/driver.rs crates/node/src/storage.rs crates/node/src/kv.rs)
about="A seeded sample (seed $seed) of $sample cargo-mutants mutants of ${files[*]}; battery: default \`faultline run -w W --seed S --time-limit 12\` for register, append, set, kv, counter (seeds 1–5)."

report() { # OUT TABLE...
    local o="$1"; shift
    local args=()
    for t in "$@"; do args+=(--results "$t"); done
    cargo build -p faultline --bin faultline --quiet
    set +e
    "$CARGO_TARGET_DIR/debug/faultline" mutation-report "${args[@]}" \
        --notes "$root/ci/mutation-notes.tsv" --out "$o" --about "$about"
    local status=$?
    set -e
    cat "$o/mutation.md"
    return "$status"
}

if (( ${#merge[@]} > 0 )); then
    (( ${#merge[@]} >= 2 )) || { echo "mutation.sh: --merge OUT SHARD_DIR..." >&2; exit 4; }
    o="${merge[0]}"
    tables=()
    for d in "${merge[@]:1}"; do tables+=("$d/results.tsv"); done
    mkdir -p "$o"
    report "$o" "${tables[@]}"
    exit $?
fi

command -v cargo-mutants >/dev/null || { echo "mutation.sh: cargo-mutants is missing: cargo install cargo-mutants --locked" >&2; exit 3; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"
table="$out/results.tsv"
printf 'mutant\toutcome\tdetail\tbuild_s\tbattery_s\ttests_s\n' > "$table"

# The sample: every mutant of the files, in cargo-mutants' order, shuffled
# by the seed; this shard's slice of it. One JSON object per line.
cargo mutants --list --json --package faultline-raft --package faultline-node > "$out/all.json"
python3 - "$out/all.json" "$seed" "$sample" "$shard_k" "$shard_n" "$only" "${files[@]}" > "$out/sample.jsonl" <<'PY'
import json, random, re, sys
path, seed, sample, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
only = re.compile(sys.argv[6]) if sys.argv[6] else None
files = set(sys.argv[7:])
mutants = [m for m in json.load(open(path)) if m["file"] in files]
random.Random(seed).shuffle(mutants)
for i, m in enumerate(mutants[:sample]):
    if only and not only.search(m["name"]):
        continue
    if i % n == k - 1:
        print(json.dumps({"name": m["name"], "file": m["file"], "diff": m["diff"]}))
PY
count=$(wc -l < "$out/sample.jsonl")
echo "mutation.sh: $count mutants in this shard (sample of $sample, seed $seed)"

# A scratch copy of the tree to mutate, with its own target directory
# (builds from two source trees in one would invalidate each other).
work="$out/tree"
rm -rf "$work"
git worktree add --detach --force "$work" HEAD >/dev/null
cleanup() { cd "$root"; git worktree remove --force "$work" >/dev/null 2>&1 || rm -rf "$work"; }
trap cleanup EXIT

battery=(
    "register 1"
    "append 2"
    "set 3"
    "kv 4"
    "counter 5"
)
mutant_target="$out/target"
# The controller is built once, from the unmutated tree, and kept aside; each
# mutant rebuilds only the node program (dev profile: optimized, incremental,
# seconds instead of a minute of release build) and the battery points
# `--node-bin` at it.
harness="$out/faultline"
node="$mutant_target/debug/faultline-node"
build_node() { (cd "$work" && CARGO_TARGET_DIR="$mutant_target" cargo build -p faultline-node --bin faultline-node --quiet); }
# Runs the battery against the tree's node; prints the first non-valid run.
run_battery() {
    local store="$1"
    for b in "${battery[@]}"; do
        read -r w s <<< "$b"
        set +e
        timeout 180 "$harness" run -w "$w" --seed "$s" --time-limit 12 --node-bin "$node" \
            --store "$store" > "$store.console" 2>&1
        local code=$?
        set -e
        rm -rf "$store"
        if (( code != 0 )); then
            local v
            v=$(case $code in 1) echo invalid;; 2) echo unknown;; 3) echo "cluster failed";; 124) echo hang;; *) echo "exit $code";; esac)
            echo "$w-s$s $v"
            return 0
        fi
    done
    return 1
}

# A first build can start from the main tree's dependencies (registry
# crates do not depend on where the workspace is; its own crates rebuild).
if [[ ! -d "$mutant_target/debug" && -d "$CARGO_TARGET_DIR/debug/deps" ]]; then
    mkdir -p "$mutant_target"
    cp -a --reflink=auto "$CARGO_TARGET_DIR/debug" "$mutant_target/debug"
fi
# The unmutated tree must pass the battery, or nothing can be concluded.
(cd "$work" && CARGO_TARGET_DIR="$mutant_target" cargo build -p faultline --bin faultline --quiet)
cp "$mutant_target/debug/faultline" "$harness"
build_node
if caught=$(run_battery "$out/baseline"); then
    echo "mutation.sh: the unmutated tree fails the battery ($caught): fix that first" >&2
    exit 3
fi
echo "mutation.sh: baseline passes the battery"

i=0
while IFS= read -r line; do
    i=$(( i + 1 ))
    name=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["name"])' "$line")
    # cargo-mutants labels the new side of its diff with the mutant's name:
    # both sides name the file, for git apply.
    python3 -c '
import json, sys
m = json.loads(sys.argv[1])
body = m["diff"].split("\n", 2)[2]
sys.stdout.write("--- a/%s\n+++ b/%s\n%s" % (m["file"], m["file"], body))' "$line" > "$out/mutant.diff"
    (cd "$work" && git checkout --quiet -- . && git apply "$out/mutant.diff") || {
        printf '%s\tunviable\tthe diff does not apply\t0\t0\t0\n' "$name" >> "$table"; continue; }
    t0=$(date +%s)
    if ! build_node > "$out/build.log" 2>&1; then
        printf '%s\tunviable\tdoes not build\t%s\t0\t0\n' "$name" "$(( $(date +%s) - t0 ))" >> "$table"
        echo "[$i/$count] unviable  $name"
        continue
    fi
    t1=$(date +%s)
    if caught=$(run_battery "$out/battery"); then
        printf '%s\tharness\t%s\t%s\t%s\t0\n' "$name" "$caught" "$(( t1 - t0 ))" "$(( $(date +%s) - t1 ))" >> "$table"
        echo "[$i/$count] harness   $name ($caught)"
        continue
    fi
    t2=$(date +%s)
    if (cd "$work" && CARGO_TARGET_DIR="$mutant_target" timeout 600 cargo test -p faultline-raft -p faultline-node --quiet) > "$out/tests.log" 2>&1; then
        outcome=missed
    else
        outcome=tests
    fi
    printf '%s\t%s\t-\t%s\t%s\t%s\n' "$name" "$outcome" "$(( t1 - t0 ))" "$(( t2 - t1 ))" "$(( $(date +%s) - t2 ))" >> "$table"
    echo "[$i/$count] $outcome $name"
done < "$out/sample.jsonl"
(cd "$work" && git checkout --quiet -- .)

report "$out" "$table"
