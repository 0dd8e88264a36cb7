#!/usr/bin/env bash
# Fuzzes Rill's on-disk formats with cargo-fuzz on the STABLE toolchain.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   run each target SECONDS (default 30), report
#   scripts/fuzz.sh seed                     regenerate the seed corpora (fuzz/corpus/*/seed-*)
#   scripts/fuzz.sh list                     list the targets
#
# Targets (fuzz/fuzz_targets/): stored_batch, kafka_batch, segment_open.
#
# Stable: `-s none` (no sanitizer) needs no nightly flag. cargo-fuzz still instruments with
# SanitizerCoverage through `-Cpasses=sancov-module` and `-Cllvm-args`, both stable, and builds
# with debug assertions (so integer overflow panics, as in `cargo test`). Checked with
# cargo-fuzz 0.13.2 and rustc 1.95; RUSTC_BOOTSTRAP is not needed. Install with
# `cargo install cargo-fuzz` if missing.
#
# Environment:
#   FUZZ_JOBS=N        run N libFuzzer workers in fork mode (default 1, in-process)
#   FUZZ_KEEP_GOING=1  fork mode with -ignore_crashes=1: keep fuzzing after a crash, so one
#                      known bug does not hide the next (artifacts still land in fuzz/artifacts)
#   FUZZ_ARGS="..."    extra libFuzzer flags
#
# New inputs go to fuzz/corpus/<target>/ next to the committed seeds; only `seed-*` files are
# tracked (fuzz/.gitignore). Crashes go to fuzz/artifacts/<target>/; minimise one with
#   cargo fuzz tmin -s none <target> fuzz/artifacts/<target>/crash-...
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

targets=(stored_batch kafka_batch segment_open)
what="${1:-all}"
seconds="${2:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi

case "$what" in
    list)
        printf '%s\n' "${targets[@]}"
        exit 0
        ;;
    seed)
        (cd fuzz && cargo run --quiet --release --example seed -- corpus)
        echo "fuzz.sh: seeds written to fuzz/corpus/<target>/seed-*"
        exit 0
        ;;
    all) ;;
    *)
        if [[ ! " ${targets[*]} " == *" $what "* ]]; then
            echo "fuzz.sh: unknown target '$what' (one of: ${targets[*]}, all, seed, list)" >&2
            exit 2
        fi
        targets=("$what")
        ;;
esac

cargo fuzz build -s none

logs="fuzz/target/fuzz-logs"
mkdir -p "$logs"
summary=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    flags=(-max_total_time="$seconds" -print_final_stats=1)
    jobs="${FUZZ_JOBS:-1}"
    if [[ "${FUZZ_KEEP_GOING:-0}" == 1 ]]; then
        flags+=(-fork="$jobs" -ignore_crashes=1)
    elif [[ "$jobs" != 1 ]]; then
        flags+=(-fork="$jobs")
    fi
    # shellcheck disable=SC2206 # FUZZ_ARGS is split on purpose
    flags+=(${FUZZ_ARGS:-})
    log="$logs/$target.log"
    echo "fuzz.sh: $target for ${seconds}s (log: $log)"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$artifacts"
    before="$(ls "$artifacts" | sort)"
    status=0
    cargo fuzz run -s none "$target" -- "${flags[@]}" >"$log" 2>&1 || status=$?
    # In-process runs print stat::number_of_executed_units; fork mode prints "#N ... exec/s".
    executions="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
    if [[ -z "$executions" ]]; then
        executions="$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)"
    fi
    new="$(comm -13 <(echo "$before") <(ls "$artifacts" | sort) | grep -v '^minimized-' || true)"
    crashes="$(echo -n "$new" | grep -c . || true)"
    if [[ "$status" != 0 || "$crashes" != 0 ]]; then
        failed=1
        summary+=("$target: ${executions:-?} executions, CRASH (exit $status, $crashes new artifact(s)); distinct panics:")
        # Replay each new artifact to group crashes by panic site and message.
        binary="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release/$target"
        while read -r count panic; do
            summary+=("    $count x $panic")
        done < <(for artifact in $new; do
            "$binary" "$artifacts/$artifact" 2>&1 | grep -m1 -A1 'panicked at' | tr '\n' ' ' \
                | sed -e 's/^thread .* panicked at //' -e 's/ *$//'
            echo
        done | grep . | sort | uniq -c)
    else
        summary+=("$target: ${executions:-?} executions, no crash")
    fi
done

echo
echo "fuzz.sh summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
