#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, on a fresh Debian machine:
#   - the openssl command (key files made the way abcdesktop's installation document makes them);
#   - python3 with PyJWT 2.4.0 (pyos's pin) and pycryptodome, to mint and check tokens as pyos does.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

have_python_deps() {
    python3 - <<'PY' 2>/dev/null
import jwt, Crypto, cryptography
assert jwt.__version__ == "2.4.0", jwt.__version__
PY
}

packages=()
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
command -v python3 >/dev/null 2>&1 || packages+=(python3 python3-pip)
if [ "${#packages[@]}" -gt 0 ]; then
    echo "install-test-deps: apt-get install ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if ! have_python_deps; then
    echo "install-test-deps: pip install PyJWT[crypto]==2.4.0 pycryptodome"
    pip_args=(--quiet --disable-pip-version-check --root-user-action=ignore "PyJWT[crypto]==2.4.0" pycryptodome)
    # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told otherwise.
    python3 -m pip install "${pip_args[@]}" 2>/dev/null \
        || python3 -m pip install --break-system-packages "${pip_args[@]}"
    have_python_deps || { echo "install-test-deps: PyJWT 2.4.0 still missing" >&2; exit 1; }
fi
