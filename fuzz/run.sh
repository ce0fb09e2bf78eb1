#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, each for FUZZ_TIME seconds on one core,
# and prints a Markdown table row per target (executions, time, corpus, crashes) for
# FUZZING.md. Installs nightly and cargo-fuzz when missing. Usage (from the repo root):
#   fuzz/run.sh [target...]        FUZZ_TIME=300 by default; all targets by default
# The corpus grows in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>); crashes land
# in fuzz/artifacts/<target>/. Exits 1 when any target crashed.
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_TIME=${FUZZ_TIME:-300}
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(token tokenreview go_duration ldap_result config)

rustup toolchain list | grep -q '^nightly' ||
    rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
cargo +nightly fuzz build -O

# The config target writes each input as a file here (see src/config.rs).
scratch=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/klw-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export KLW_FUZZ_SCRATCH=$scratch

failed=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    start=$(date +%s)
    status=0
    dict=()
    [ -f "dicts/$t.dict" ] && dict=(-dict="dicts/$t.dict")
    # -jobs/-workers stay at 1: the machine is shared. The seeds are read, never written.
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$FUZZ_TIME" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        "${dict[@]}" >"$log" 2>&1 || status=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f ! -name last-run.log | wc -l)
    if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
        failed=1
        echo "$t: exit $status, $crashes file(s) in fuzz/artifacts/$t (log: fuzz/$log)" >&2
    fi
    rows+=("| \`$t\` | ${execs:-?} | ${rate:-?}/s | ${secs} s | $corpus | $crashes |")
done

echo
echo "| target | executions | rate | time | corpus | crashes |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
exit "$failed"
