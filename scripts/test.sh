#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the system tools the tests
# need when they are missing (scripts/install-test-deps.sh: cc with
# AddressSanitizer, valgrind, python3), runs every Rust test (unit, stage
# parity, CLI, C ABI under valgrind and ASan, hostile input, property tests,
# fuzz regressions), then fuzzes every target for FUZZ_SECONDS (default 30) each.
# .ci/run calls it after the lint gates.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --release
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
