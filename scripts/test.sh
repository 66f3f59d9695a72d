#!/usr/bin/env bash
# The project's test command: installs the test dependencies (openssl; PyJWT 2.4.0 and
# pycryptodome in a virtual environment, target/test-venv), then runs every test of the
# workspace with that environment's python3 first on PATH (the interop tests call `python3`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv_bin=$(bash scripts/install-test-deps.sh | tail -n 1)
export PATH="$venv_bin:$PATH"
cargo test --workspace --locked
