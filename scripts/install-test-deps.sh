#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, on a fresh Debian machine:
#   - the openssl command (key files made the way abcdesktop's installation document makes them);
#   - python3 with the venv module (Debian packages), and a virtual environment inside the build
#     folder, target/test-venv, holding PyJWT 2.4.0 (pyos's pin) and pycryptodome, to mint and
#     check tokens as pyos does. Nothing is pip-installed into the system Python;
#   - Debian's nginx (scripts/install-nginx.sh), the reference of the tests that compare with it.
# Idempotent: does nothing when everything is already there. Prints nothing else on stdout but,
# as its last line, the virtual environment's bin directory (scripts/test.sh puts it first on
# PATH, so the tests' `python3` is the environment's).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CARGO_TARGET_DIR:-$PWD/target}/test-venv"

have_python_deps() {
    "$venv/bin/python3" - <<'PY' 2>/dev/null
import jwt, Crypto, cryptography
assert jwt.__version__ == "2.4.0", jwt.__version__
PY
}

packages=()
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
command -v python3 >/dev/null 2>&1 || packages+=(python3)
# Debian splits `venv`'s pip bootstrap (ensurepip) into python3-venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
if [ "${#packages[@]}" -gt 0 ]; then
    echo "install-test-deps: apt-get install ${packages[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# Debian's nginx, the reference some tests compare with (path semantics, upstream behaviour).
bash "$(dirname "$0")/install-nginx.sh" >&2

if ! have_python_deps; then
    echo "install-test-deps: $venv: pip install PyJWT[crypto]==2.4.0 pycryptodome" >&2
    # A half-made environment (interrupted run, python upgraded underneath) is made again.
    "$venv/bin/python3" -c '' >/dev/null 2>&1 || python3 -m venv --clear "$venv" >&2
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
        "PyJWT[crypto]==2.4.0" pycryptodome >&2
    have_python_deps || { echo "install-test-deps: PyJWT 2.4.0 still missing in $venv" >&2; exit 1; }
fi
echo "$venv/bin"
