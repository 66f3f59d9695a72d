#!/usr/bin/env bash
# The project's test command: installs the test dependencies (openssl, PyJWT 2.4.0, pycryptodome),
# then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --workspace --locked
