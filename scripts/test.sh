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
py_log=$(mktemp)
PYTHON_ENV_DEPS_ONLY=1 scripts/python-env.sh >"$py_log" 2>&1 &
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
trap 'rm -f "$vg_log" "$py_log"' EXIT
"$capi_bin" --exact "$VALGRIND_TEST" --nocapture >"$vg_log" 2>&1 &
vg_pid=$!

rc=0
cargo test --release -- --skip "$VALGRIND_TEST" || rc=$?
if [ "$rc" -eq 0 ]; then
    scripts/fuzz.sh "${FUZZ_SECONDS:-30}" || rc=$?
fi

vg_rc=0
wait "$vg_pid" || vg_rc=$?
echo "--- tests/capi.rs $VALGRIND_TEST (run alongside the suite) ---"
cat "$vg_log"
if [ "$vg_rc" -ne 0 ]; then
    echo "test.sh: $VALGRIND_TEST FAILED (exit $vg_rc)" >&2
    rc=1
fi

# The Python package (PyO3): its own tests, the openai client against `serve`, Ray Serve.
# After the valgrind test: building the extension rewrites target/release/deps/
# libchatterbox_ort.so (a cdylib has one fixed name), which that test loads.
py_rc=0
wait "$py_pid" || py_rc=$?
cat "$py_log"
if [ "$py_rc" -ne 0 ]; then
    echo "test.sh: the Python test environment could not be set up (exit $py_rc)" >&2
    rc=1
fi
if [ "$rc" -eq 0 ]; then
    scripts/test-python.sh -q -p no:warnings || rc=$?
fi
exit "$rc"
