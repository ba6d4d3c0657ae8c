#!/usr/bin/env bash
# Bounded fuzzing of every cargo-fuzz target in fuzz/ (libFuzzer + AddressSanitizer).
#
#   scripts/fuzz.sh [SECONDS]      # SECONDS per target; default $FUZZ_SECONDS or 30
#   FUZZ_TARGETS="wav text" scripts/fuzz.sh 60
#
# Installs cargo-fuzz when missing (pinned version), builds all targets once, then runs
# each for SECONDS with the committed seeds (fuzz/corpus/<target>/, read only) and a
# working corpus that persists locally (fuzz/target/corpus/<target>/, git-ignored).
# Invariants: no panic, no abort, no allocation of 1 GiB or more (-malloc_limit_mb), no
# more than 2 GiB resident (-rss_limit_mb), no input slower than 60 s. A crash leaves
# its input in fuzz/artifacts/<target>/ and makes this script exit 1, naming the file.
# Replay one: fuzz/target/<triple>/release/<target> <file>. Minimise it (-minimize_crash=1
# -runs=10000 -exact_artifact_path=...), save it under fuzz/regressions/<target>/, and
# tests/fuzz_regressions.rs replays it in `cargo test` from then on.
#
# Toolchain: `cargo +nightly` when a nightly toolchain is installed, otherwise the
# default (stable) toolchain with RUSTC_BOOTSTRAP=1 (the sanitizer flags are -Z flags).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-30}}"
TARGETS="${FUZZ_TARGETS:-wav voice_file manifest text capi_args}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    CARGO=(cargo +nightly)
    toolchain=nightly
else
    export RUSTC_BOOTSTRAP=1
    CARGO=(cargo)
    toolchain="$(rustc --version) with RUSTC_BOOTSTRAP=1"
fi
triple="$(rustc -vV | sed -n 's/^host: //p')"

start=$(date +%s)
echo "fuzz: building all targets ($toolchain, $triple)"
"${CARGO[@]}" fuzz build --target "$triple"
build_s=$(( $(date +%s) - start ))
echo "fuzz: build took ${build_s}s"

bin_dir="fuzz/target/$triple/release"
failed=()
for t in $TARGETS; do
    work="fuzz/target/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    log="fuzz/target/logs/$t.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    marker="$(mktemp)"
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
    rc=0
    # Leak checks stay on (libFuzzer's default with ASan).
    "$bin_dir/$t" "$work" "fuzz/corpus/$t" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=60 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" \
        | sed 's/^/    /' || true
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $t FAILED (exit $rc); log: $log"
        grep -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|==ERROR|SUMMARY|out-of-memory|malloc\(' "$log" \
            | head -n 8 | sed 's/^/    /' || true
        found=0
        while IFS= read -r f; do
            echo "fuzz: $t crash input: $f"
            found=1
        done < <(find "$artifacts" -type f -newer "$marker" 2>/dev/null)
        [ "$found" -eq 1 ] || tail -n 20 "$log" | sed 's/^/    /'
        failed+=("$t")
    fi
    rm -f "$marker"
done

total_s=$(( $(date +%s) - start ))
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (build ${build_s}s, total ${total_s}s)"
    exit 1
fi
echo "fuzz: no crash in: $TARGETS (${SECONDS_PER_TARGET}s each; build ${build_s}s, total ${total_s}s)"
