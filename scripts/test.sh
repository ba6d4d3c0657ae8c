#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the system tools the tests
# need when they are missing (scripts/install-test-deps.sh: cc with
# AddressSanitizer, valgrind, python3), runs every Rust test (unit, stage
# parity, CLI, C ABI under valgrind and ASan, hostile input, property tests,
# fuzz regressions), then fuzzes every target for FUZZ_SECONDS (default 30) each, then
# the Python package's tests (scripts/test-python.sh: PyO3 build, pytest on tests/python:
# the package, the openai client against `chatterbox-ort serve`, a local Ray Serve cluster).
# .ci/run calls it after the lint gates.
#
# The C ABI test under valgrind is single-threaded and the longest test (about 4 min
# on 2 cores): it runs in the background, from its built test binary, while the rest of
# the suite and the fuzzing use the other core; its result and output are reported at
# the end, and a failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh

# The Python test environment's downloads (pip, network-bound) run beside the Rust build.
# Each background job writes its exit status to a file when it ends (polled below: a finished
# child stays a zombie, alive to `kill -0`, until this shell waits for it).
py_log=$(mktemp)
py_done=$(mktemp -u)
(
    st=0
    PYTHON_ENV_DEPS_ONLY=1 scripts/python-env.sh >"$py_log" 2>&1 || st=$?
    echo "$st" >"$py_done"
) &
py_pid=$!

VALGRIND_TEST=c_tests_are_clean_under_valgrind
cargo test --release --no-run
capi_bin=$(cargo test --release --test capi --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "capi":
        print(m["executable"])
')
if [ -z "$capi_bin" ] || [ ! -x "$capi_bin" ]; then
    echo "test.sh: could not find the built tests/capi.rs binary" >&2
    exit 1
fi
vg_log=$(mktemp)
vg_done=$(mktemp -u)
trap 'rm -f "$vg_log" "$vg_done" "$py_log" "$py_done"' EXIT
(
    st=0
    "$capi_bin" --exact "$VALGRIND_TEST" --nocapture >"$vg_log" 2>&1 || st=$?
    echo "$st" >"$vg_done"
) &
vg_pid=$!

rc=0
cargo test --release -- --skip "$VALGRIND_TEST" || rc=$?

# The Python package (PyO3): its own tests, the openai client against `serve`, Ray Serve. In
# the background beside the fuzzing (whose targets build in fuzz/target), from the moment the
# valgrind test is done: building the extension rewrites target/release/deps/
# libchatterbox_ort.so (a cdylib has one fixed name), which that test loads.
pyt_log=$(mktemp)
pyt_rc_file=$(mktemp)
trap 'rm -f "$vg_log" "$vg_done" "$py_log" "$py_done" "$pyt_log" "$pyt_rc_file"' EXIT
echo skipped >"$pyt_rc_file"
if [ "$rc" -eq 0 ]; then
    (
        # Until the valgrind test and the requirements' install (its failure is reported
        # below) are done.
        until [ -s "$vg_done" ] && [ -s "$py_done" ]; do sleep 2; done
        prc=0
        scripts/test-python.sh -q -p no:warnings >"$pyt_log" 2>&1 || prc=$?
        echo "$prc" >"$pyt_rc_file"
    ) &
    pyt_pid=$!
    scripts/fuzz.sh "${FUZZ_SECONDS:-30}" || rc=$?
    wait "$pyt_pid" || true
fi

wait "$vg_pid" || true
vg_rc=$(cat "$vg_done" 2>/dev/null || echo 1)
echo "--- tests/capi.rs $VALGRIND_TEST (run alongside the suite) ---"
cat "$vg_log"
if [ "$vg_rc" -ne 0 ]; then
    echo "test.sh: $VALGRIND_TEST FAILED (exit $vg_rc)" >&2
    rc=1
fi

wait "$py_pid" || true
py_rc=$(cat "$py_done" 2>/dev/null || echo 1)
echo "--- Python test environment (set up alongside the suite) ---"
cat "$py_log"
if [ "$py_rc" -ne 0 ]; then
    echo "test.sh: the Python test environment could not be set up (exit $py_rc)" >&2
    rc=1
fi
echo "--- scripts/test-python.sh (run alongside the fuzzing) ---"
cat "$pyt_log"
pyt_rc=$(cat "$pyt_rc_file")
if [ "$pyt_rc" != 0 ]; then
    echo "test.sh: the Python tests FAILED or did not run (status: $pyt_rc)" >&2
    rc=1
fi
exit "$rc"
