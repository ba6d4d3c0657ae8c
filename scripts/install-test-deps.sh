#!/usr/bin/env bash
# Installs the system tools the test suite needs, on Debian or Ubuntu, when they
# are missing; does nothing when everything is present (safe to run every time).
#
#   cc + AddressSanitizer runtime  tests/capi.rs compiles tests/c/*.c, also with
#                                  -fsanitize=address            (package gcc)
#   valgrind                       tests/capi.rs runs the C test under memcheck
#   python3                        tests/capi.rs runs examples/python (ctypes)
#   python3-venv                   scripts/python-env.sh creates the Python package's venv
#                                  (Debian's python3 has no ensurepip without it)
#
# Needs root (or sudo) to install. .ci/run calls it before `cargo test`; the
# tests fail, naming this script, when a tool is still missing.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }

# A C compiler that can link an AddressSanitizer program.
asan_ok() {
    have cc || return 1
    local dir
    dir=$(mktemp -d)
    printf 'int main(void) { return 0; }\n' >"$dir/t.c"
    local ok=0
    cc -fsanitize=address -fno-omit-frame-pointer "$dir/t.c" -o "$dir/t" >/dev/null 2>&1 || ok=1
    rm -rf "$dir"
    return "$ok"
}

asan_ok || missing+=(gcc libc6-dev)
have valgrind || missing+=(valgrind)
have python3 || missing+=(python3)
venv_ok() { python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }
{ have python3 && venv_ok; } || missing+=(python3-venv)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-deps: cc (with AddressSanitizer), valgrind, python3 and its venv module are present"
    exit 0
fi

if ! have apt-get; then
    echo "install-test-deps: missing ${missing[*]}, and this is not a Debian/Ubuntu system (no apt-get); install them by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then
        sudo=(sudo)
    else
        echo "install-test-deps: missing ${missing[*]}; run this script as root to install them" >&2
        exit 1
    fi
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# gcc pulls in libgcc-N-dev, which carries libasan; check that it worked.
if ! asan_ok; then
    echo "install-test-deps: cc still cannot link with -fsanitize=address (is cc clang without compiler-rt?)" >&2
    exit 1
fi
have valgrind && have python3
if ! venv_ok; then
    echo "install-test-deps: python3 still cannot create a venv (python3 -m venv needs ensurepip)" >&2
    exit 1
fi
echo "install-test-deps: done"
