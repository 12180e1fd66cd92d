#!/usr/bin/env bash
#: ci/nightly.sh — the nightly matrix. Five sets of runs:
#:   tuned    the correct node must be valid and each deliberate mistake
#:            caught by the workload and schedule chosen to expose it;
#:   untuned  each mistake under a default run (`faultline run --node-bug M
#:            -w W --time-limit T`, exploration on, nothing else): the
#:            detection rate a user gets without knowing the bug;
#:   default  the correct node under default runs of every workload
#:            (exploration on): must always be valid;
#:   etcd     etcd under default runs of every workload: must be valid;
#:   member   membership changes: the correct node beside partitions and
#:            kills and etcd must be valid; single-step-change under the
#:            member nemesis alone caught (config-on-commit runs there as a
#:            known gap).
#: Writes runs.tsv, junit.xml, summary.md and the run folders of unexpected
#: verdicts to --out; exits 1 on any unexpected verdict.
#:
#: Usage: ci/nightly.sh [--budget MINUTES] [--quick] [--seeds N]
#:                      [--sets tuned,untuned,default,etcd,member] [--shard K/N] [--out DIR]
#:        ci/nightly.sh --merge OUT SHARD_DIR...
#:   --budget MINUTES  stop starting runs once this is spent (default 30)
#:   --quick           a small matrix for CI (about 3 minutes; no etcd)
#:   --seeds N         seeds per tuned/untuned entry (default 10; --quick: 2);
#:                     default runs use 2N seeds, etcd runs 3
#:   --sets LIST       which sets to run (default: all)
#:   --dev             run the dev-profile binary (optimized; shared with the tests) instead of release
#:                     (FAULTLINE_BIN=PATH: run that binary, build nothing)
#:   --shard K/N       run only the K-th of N slices of the runs (for a
#:                     matrix of parallel jobs; merge their outputs after)
#:   --out DIR         output directory (default nightly-out)
#:   --merge OUT DIRS  one junit.xml and summary.md from the shards' outputs
set -euo pipefail

budget_min=30
quick=0
seeds=""
out="nightly-out"
sets="tuned,untuned,default,etcd,member"
shard_k=1
shard_n=1
merge=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --budget) budget_min="${2:?--budget needs MINUTES}"; shift 2 ;;
        --quick) quick=1; shift ;;
        --dev) dev=1; shift ;;
        --seeds) seeds="${2:?--seeds needs N}"; shift 2 ;;
        --sets) sets="${2:?--sets needs a list}"; shift 2 ;;
        --shard)
            [[ "${2:-}" =~ ^([1-9][0-9]*)/([1-9][0-9]*)$ ]] || { echo "nightly.sh: --shard ${2:-}: expected K/N" >&2; exit 4; }
            shard_k=${BASH_REMATCH[1]}; shard_n=${BASH_REMATCH[2]}
            (( shard_k <= shard_n )) || { echo "nightly.sh: --shard $2: K must be at most N" >&2; exit 4; }
            shift 2 ;;
        --out) out="${2:?--out needs DIR}"; shift 2 ;;
        --merge) shift; merge=("$@"); break ;;
        -h|--help) sed -n 's/^#: \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "nightly.sh: unknown option $1 (see --help)" >&2; exit 4 ;;
    esac
done
[[ "$budget_min" =~ ^[0-9]+$ ]] || { echo "nightly.sh: --budget $budget_min: expected whole minutes" >&2; exit 4; }
if [[ $quick == 1 ]]; then
    [[ -n "$seeds" ]] || seeds=2
    (( budget_min <= 5 )) || budget_min=5
fi
[[ -n "$seeds" ]] || seeds=10
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || { echo "nightly.sh: --seeds $seeds: expected a positive number" >&2; exit 4; }
for set in ${sets//,/ }; do
    case "$set" in tuned|untuned|default|etcd|member) ;; *) echo "nightly.sh: --sets: unknown set $set (tuned, untuned, default, etcd, member)" >&2; exit 4 ;; esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if [[ -n "${FAULTLINE_BIN:-}" ]]; then
    # A binary already built (.ci/run: the one `cargo test` built): building
    # again with other features would recompile half the workspace.
    bin="$FAULTLINE_BIN"
    [[ -x "$bin" ]] || { echo "nightly.sh: FAULTLINE_BIN=$bin is not an executable" >&2; exit 4; }
elif [[ ${dev:-0} == 1 ]]; then
    # The dev profile is optimized too.
    cargo build -p faultline --all-features
    bin="$CARGO_TARGET_DIR/debug/faultline"
else
    cargo build --release -p faultline
    bin="$CARGO_TARGET_DIR/release/faultline"
fi

if (( ${#merge[@]} > 0 )); then
    (( ${#merge[@]} >= 2 )) || { echo "nightly.sh: --merge OUT SHARD_DIR..." >&2; exit 4; }
    out="${merge[0]}"
    mkdir -p "$out"
    args=()
    wall=0
    for d in "${merge[@]:1}"; do
        [[ -f "$d/runs.tsv" ]] || { echo "nightly.sh: --merge: $d has no runs.tsv" >&2; exit 4; }
        args+=(--results "$d/runs.tsv")
        w=$(cat "$d/wall_s" 2>/dev/null || echo 0)
        (( w > wall )) && wall=$w
    done
    set +e
    "$bin" nightly-report "${args[@]}" --out "$out" --wall-s "$wall" --note "Merged from $(( ${#merge[@]} - 1 )) shards; wall time is the slowest shard's."
    status=$?
    set -e
    (( status <= 1 )) || { echo "nightly.sh: nightly-report failed ($status)" >&2; exit 3; }
    cat "$out/summary.md"
    exit "$status"
fi

mkdir -p "$out/runs"
out="$(cd "$out" && pwd)"
table="$out/runs.tsv"
printf 'suite\tname\texpected\texit\twall_s\trun_dir\tsetup\n' > "$table"

# Every run: 8 s of traffic (unless the entry sets --time-limit) at 500
# ops/s, 1 s of calm, then the final reads and the check (about 10 s of wall
# time in all).
common=(--fixed --quiet-period 1 --rate 500)
# Short elections: leadership churns many times within a run.
fast=(--node-arg=--election-timeout-ms=100 --node-arg=--heartbeat-ms=20)
fast5=(--node-arg=--election-timeout-ms=50 --node-arg=--heartbeat-ms=10)
# etcd-raft's library defaults: no PreVote, no CheckQuorum. A node that
# comes back from isolation with a higher term disrupts the leader, and a
# leader cut off from its majority keeps believing it leads.
bare=(--node-arg=--pre-vote=false --node-arg=--check-quorum=false)
# Clients resend an attempt that timed out (same request id) until 3 s pass.
resend=(--op-timeout-ms 3000 --attempt-timeout-ms 250)
# A leader sends one entry per message and waits for its answer; requests
# and ops outlast two elections (what the figure-8 script needs).
onebyone=(--node-arg=--max-entries-per-msg=1 --node-arg=--max-inflight-msgs=1 --node-arg=--request-timeout-ms=5000 --op-timeout-ms 5000)

# suite|workload|nemesis|flags. Each mistake has the workload and schedule
# that exposes it; each unusual schedule or node setting used for a mistake
# also runs against the correct node (a twin), so no setting can be the
# cause of a detection.
correct=(
    "correct|register|partition,kill,pause|-n 3 --nemesis-interval 1.5"
    "correct|kv|partition:isolate-leader|-n 3 --nemesis-interval 1 --concurrency 3n --pin-clients --node-arg=--check-quorum=false"
    "correct|counter|pause:leader,kill:leader|-n 3 --nemesis-interval 0.6 ${resend[*]}"
    "correct|append|kill:majority+all|-n 3 --nemesis-interval 1"
    "correct|append|partition:isolate-one|-n 3 --nemesis-interval 0.5 ${bare[*]} ${fast[*]}"
    "correct|append|partition|-n 5 --nemesis-interval 0.5 ${fast5[*]}"
    "correct|set|partition:isolate-one+halves|-n 3 --nemesis-interval 1 --concurrency 3n --pin-clients"
    "correct|append|script:vote-loss|-n 3 --time-limit 20 ${bare[*]}"
    "correct|append|script:figure-8|-n 5 --time-limit 20 ${onebyone[*]}"
)
mistakes=(
    # The leader answers before a majority has the entry: an isolated
    # leader acknowledges writes the majority never sees.
    "ack-before-commit|register|partition|-n 3 --nemesis-interval 1.5"
    # Followers answer reads from their own state: clients pinned to a cut-off
    # follower read old values.
    "stale-local-read|register|partition:isolate-one+halves|-n 3 --nemesis-interval 1 --concurrency 3n --pin-clients"
    # Acknowledged entries sit in memory for up to a tick: killing a majority
    # at once loses them.
    "ack-before-fsync|append|kill:majority+all|-n 3 --nemesis-interval 1"
    # A leader cut off from its majority answers reads without asking it;
    # with CheckQuorum on it steps down exactly when the majority could
    # elect another, so the window only opens with CheckQuorum off.
    "stale-leader-read|register|partition:isolate-leader|-n 3 --time-limit 14 --nemesis-interval 1 --concurrency 3n --pin-clients --node-arg=--check-quorum=false"
    # A resent request is applied again: the append shows a value twice.
    "skip-dedup|append|pause:leader,kill:leader|-n 3 --time-limit 14 --nemesis-interval 0.6 ${resend[*]}"
    # A node back from isolation wins an election with a stale log and
    # overwrites committed entries.
    "vote-without-log-check|append|partition:isolate-one|-n 3 --nemesis-interval 0.5 ${bare[*]} ${fast[*]}"
    # A follower keeps a conflicting suffix: reads show appends that were
    # never acknowledged in between acknowledged ones.
    "no-truncate-on-conflict|append|partition|-n 5 --nemesis-interval 0.5 ${fast5[*]}"
    # A vote is not kept across a crash: the voters of a new leader, killed
    # the moment it wins and restarted into the old leader's campaign in
    # the same term, elect a second leader of that term.
    "forget-vote|append|script:vote-loss|-n 3 --time-limit 20 ${bare[*]}"
)
# Known gaps: mistakes no schedule is known to expose from outside (see
# README, "Nightly"). They run on the first three seeds only; their rate is
# reported and their verdicts never fail the night.
gaps=(
    # An old-term entry counted as committed by its replicas (Figure 8). The
    # figure-8 script plays the scenario (the old leader acknowledges a write
    # only it had, then a rival whose log ends in a newer term is joined
    # with that majority), but the rival rarely wins the race for votes:
    # 0 of 6 seeds caught when last measured.
    "commit-previous-term|append|script:figure-8|-n 5 --time-limit 20 ${onebyone[*]}"
)
# Untuned: each mistake with the workload that suits it and at most 30 s
# of traffic; everything else is the seed's draw (exploration).
untuned=(
    "ack-before-commit|register|30"
    "stale-local-read|register|30"
    "ack-before-fsync|append|30"
    "stale-leader-read|register|30"
    "skip-dedup|append|30"
    "vote-without-log-check|append|30"
    "no-truncate-on-conflict|append|30"
    "commit-previous-term|append|30"
    "forget-vote|append|30"
)
workloads=(register kv set counter append)
default_seeds=$(( 2 * seeds ))
if [[ $quick == 1 ]]; then
    correct=("${correct[0]}" "${correct[4]}")
    mistakes=("${mistakes[0]}" "${mistakes[5]}")
    gaps=()
    untuned=("${untuned[0]}")
    workloads=(register append)
    default_seeds=1
    sets=${sets//etcd/}
    sets=${sets//member/}
fi

# The runs, one per line: expected|suite|name|workload|flags. Seeds
# outermost within each set, so a budget cut leaves every entry with about
# as many runs.
gap_seeds=$(( seeds < 3 ? seeds : 3 ))
runs=()
want() { [[ ",$sets," == *",$1,"* ]]; }
if want tuned; then
    for (( seed = 1; seed <= seeds; seed++ )); do
        for e in "${correct[@]/#/valid|}" "${mistakes[@]/#/invalid|}" "${gaps[@]/#/gap|}"; do
            IFS='|' read -r expected suite workload nemesis extra <<< "$e"
            if [[ $expected == gap ]] && (( seed > gap_seeds )); then continue; fi
            bugflag=""
            [[ $suite == correct ]] || bugflag="--node-bug $suite"
            traffic="--time-limit 8"
            [[ $extra == *--time-limit* ]] && traffic=""
            name="$workload-$(tr ",:" "+-" <<< "$nemesis")-s$seed"
            runs+=("$expected|$suite|$name|$workload|--nemesis $nemesis --seed $seed ${common[*]} $traffic $bugflag $extra")
        done
    done
fi
if want untuned; then
    for (( seed = 1; seed <= seeds; seed++ )); do
        for e in "${untuned[@]}"; do
            IFS='|' read -r mistake workload limit <<< "$e"
            runs+=("detect|untuned/$mistake|$workload-s$seed|$workload|--node-bug $mistake --time-limit $limit --seed $seed")
        done
    done
fi
if want default; then
    for (( seed = 1; seed <= default_seeds; seed++ )); do
        for workload in "${workloads[@]}"; do
            runs+=("valid|default|$workload-s$seed|$workload|--seed $seed")
        done
    done
fi
if want etcd && command -v etcd >/dev/null 2>&1; then
    for (( seed = 1; seed <= 3; seed++ )); do
        for workload in "${workloads[@]}"; do
            runs+=("valid|etcd|$workload-s$seed|$workload|--db etcd --seed $seed")
        done
    done
elif want etcd; then
    echo "nightly.sh: etcd is not on PATH: the etcd set is skipped" >&2
fi

if want member; then
    # Membership moves between 3 and 5 voters while partitions and kills go
    # on; changes of voters are asked with the network split along them
    # (README, "Membership changes"). The mistakes run with the member
    # nemesis alone and default settings otherwise.
    member=(--nemesis member,partition,kill --nodes 3 --time-limit 30)
    alone=(--nemesis member --nodes 3 --time-limit 30)
    for (( seed = 1; seed <= seeds; seed++ )); do
        runs+=("valid|member|register-s$seed|register|${member[*]} --seed $seed")
        runs+=("invalid|member/single-step-change|register-s$seed|register|${alone[*]} --node-bug single-step-change --seed $seed")
        if (( seed <= gap_seeds )); then
            runs+=("gap|member/config-on-commit|register-s$seed|register|${alone[*]} --node-bug config-on-commit --seed $seed")
            command -v etcd >/dev/null 2>&1 &&
                runs+=("valid|member/etcd|register-s$seed|register|--db etcd --nemesis member --seed $seed")
        fi
    done
fi

# This shard's slice: every N-th run from the K-th.
mine=()
for i in "${!runs[@]}"; do
    (( i % shard_n == shard_k - 1 )) && mine+=("${runs[$i]}")
done

start=$(date +%s)
deadline=$(( start + budget_min * 60 ))
total=${#mine[@]}
done_runs=0
skipped=0
for run in "${mine[@]}"; do
    IFS='|' read -r expected suite name workload flags <<< "$run"
    # A run takes 10 to 35 s; do not start one that cannot finish in time.
    if (( $(date +%s) + 40 > deadline )); then
        skipped=$(( skipped + 1 ))
        continue
    fi
    store="$out/runs/${suite//\//-}-$name"
    mkdir -p "$store"
    t0=$(date +%s.%N)
    set +e
    # shellcheck disable=SC2086 # $flags is a list of flags
    "$bin" run -w "$workload" --store "$store" $flags > "$store/console.log" 2>&1
    code=$?
    set -e
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    run_dir=$(find "$store/$workload" -mindepth 1 -maxdepth 1 -type d -name '2*' 2>/dev/null | head -1)
    [[ -n "$run_dir" ]] || run_dir="$store"
    verdict=$(case $code in 0) echo valid;; 1) echo invalid;; 2) echo unknown;; *) echo "error($code)";; esac)
    done_runs=$(( done_runs + 1 ))
    setup=$(sed -E 's/--seed [0-9]+ ?//; s/ +/ /g; s/ $//' <<< "-w $workload $flags")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$suite" "$name" "$expected" "$code" "$wall" "$run_dir" "$setup" >> "$table"
    printf '[%3d/%d] %-34s %-26s %-9s (expected %s) %5.1f s\n' \
        "$done_runs" "$total" "$suite" "$name" "$verdict" "$expected" "$wall"
    # Node data is the bulk of a run folder; expected runs do not need it.
    if [[ $verdict == "$expected" || ($expected == gap && $code -le 1) || ($expected == detect && $code -le 1) ]]; then
        rm -rf "$run_dir/nodes"
    fi
done

wall_total=$(( $(date +%s) - start ))
echo "$wall_total" > "$out/wall_s"
note=""
if (( shard_n > 1 )); then
    note="Shard $shard_k of $shard_n. "
fi
if (( skipped > 0 )); then
    note="${note}Budget of $budget_min min spent: $skipped of $total runs were not started."
    echo "nightly.sh: $note" >&2
fi
set +e
"$bin" nightly-report --results "$table" --out "$out" --wall-s "$wall_total" --note "$note"
status=$?
set -e
(( status <= 1 )) || { echo "nightly.sh: nightly-report failed ($status)" >&2; exit 3; }

# Keep only the run folders of unexpected verdicts.
tail -n +2 "$table" | while IFS=$'\t' read -r suite name expected code _ _; do
    v=$(case $code in 0) echo valid;; 1) echo invalid;; *) echo other;; esac)
    if [[ $v == "$expected" || ($expected =~ ^(gap|detect)$ && $v != other) ]]; then
        rm -rf "$out/runs/${suite//\//-}-$name"
    fi
done

# junit.xml must parse as JUnit: one testcase per run, failures with a message.
python3 - "$out/junit.xml" "$(( $(wc -l < "$table") - 1 ))" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
cases = root.findall("./testsuite/testcase")
assert len(cases) == int(sys.argv[2]), (len(cases), sys.argv[2])
for c in cases:
    assert c.get("name") and c.get("classname"), c.attrib
    for f in c.findall("failure"):
        assert "run folder" in (f.get("message") or ""), f.attrib
print(f"junit.xml: {len(cases)} test cases, {len(root.findall('.//failure'))} failures")
PY

cat "$out/summary.md"
exit "$status"
