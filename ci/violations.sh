#!/usr/bin/env bash
# Regenerates harness/tests/data/violations/: one stored invalid run per
# deliberate mistake (the nightly's tuned schedule for it) and one per
# workload, at a low rate so that each history stays small. For each entry
# the first seed of 1..8 whose run is invalid is kept: its config.json,
# results.json, history.jsonl and nemesis.jsonl (the report needs nothing
# else). The reports of these runs are what tests/violation_reports.rs and
# ci/render-report.sh check.
#
#   ci/violations.sh [NAME...]     (default: every entry)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p faultline --bin faultline
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/faultline"
dest=harness/tests/data/violations
mkdir -p "$dest"

common=(--fixed --quiet-period 1 --rate 150)
fast=(--node-arg=--election-timeout-ms=100 --node-arg=--heartbeat-ms=20)
fast5=(--node-arg=--election-timeout-ms=50 --node-arg=--heartbeat-ms=10)
bare=(--node-arg=--pre-vote=false --node-arg=--check-quorum=false)
resend=(--op-timeout-ms 3000 --attempt-timeout-ms 250)
# name|mistake|workload|flags (added to the common ones; 8 s of traffic
# unless the entry sets --time-limit)
entries=(
    "ack-before-commit|ack-before-commit|register|-n 3 --nemesis partition --nemesis-interval 1.5"
    "stale-local-read|stale-local-read|register|-n 3 --nemesis partition:isolate-one+halves --nemesis-interval 1 --concurrency 3n --pin-clients"
    "ack-before-fsync|ack-before-fsync|append|-n 3 --nemesis kill:majority+all --nemesis-interval 1"
    "stale-leader-read|stale-leader-read|register|-n 3 --time-limit 14 --nemesis partition:isolate-leader --nemesis-interval 1 --concurrency 3n --pin-clients --node-arg=--check-quorum=false"
    "skip-dedup|skip-dedup|append|-n 3 --time-limit 14 --nemesis pause:leader,kill:leader --nemesis-interval 0.6 ${resend[*]}"
    "vote-without-log-check|vote-without-log-check|append|-n 3 --nemesis partition:isolate-one --nemesis-interval 0.5 ${bare[*]} ${fast[*]}"
    "no-truncate-on-conflict|no-truncate-on-conflict|append|-n 5 --nemesis partition --nemesis-interval 0.5 ${fast5[*]}"
    "forget-vote|forget-vote|append|-n 3 --time-limit 20 --nemesis script:vote-loss ${bare[*]}"
    "skip-fsync|skip-fsync|append|-n 3 --time-limit 14 --nemesis disk --nemesis-interval 1"
    "set-lost-add|ack-before-fsync|set|-n 3 --nemesis kill:majority+all --nemesis-interval 1"
    "counter-double-add|skip-dedup|counter|-n 3 --time-limit 14 --nemesis pause:leader,kill:leader --nemesis-interval 0.6 ${resend[*]}"
    "kv-stale-read|stale-local-read|kv|-n 3 --nemesis partition:isolate-one+halves --nemesis-interval 1 --concurrency 3n --pin-clients"
)
want=("$@")
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
status=0
for e in "${entries[@]}"; do
    IFS='|' read -r name mistake workload flags <<< "$e"
    if (( ${#want[@]} > 0 )) && [[ " ${want[*]} " != *" $name "* ]]; then continue; fi
    kept=""
    for seed in 1 2 3 4 5 6 7 8; do
        rm -rf "$store/s"
        # shellcheck disable=SC2086
        traffic=(--time-limit 8)
        [[ $flags == *--time-limit* ]] && traffic=()
        set +e
        "$bin" run -w "$workload" --node-bug "$mistake" --seed "$seed" --store "$store/s" \
            "${common[@]}" "${traffic[@]}" $flags > "$store/console" 2>&1
        code=$?
        set -e
        if (( code > 2 )); then
            echo "violations: $name: seed $seed: exit $code" >&2
            tail -3 "$store/console" >&2
        fi
        if (( code == 1 )); then
            run="$(readlink -f "$store/s/latest")"
            rm -rf "${dest:?}/$name"
            mkdir -p "$dest/$name"
            cp "$run"/{config.json,results.json,history.jsonl,nemesis.jsonl} "$dest/$name/"
            kept="seed $seed"
            break
        fi
    done
    if [[ -n "$kept" ]]; then
        echo "violations: $name: $kept ($(du -sh "$dest/$name" | cut -f1))"
    else
        echo "violations: $name: no invalid run in seeds 1-8" >&2
        status=1
    fi
done
exit $status
