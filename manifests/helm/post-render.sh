#!/usr/bin/env bash
# Helm post-renderer: abcdesktop's chart renders as usual, then its router objects are replaced
# by the gateway's (an overlay of manifests/overlays), so `helm upgrade` itself does the cut-over
# and later upgrades of the chart keep the gateway. Reads Helm's rendered manifests on stdin and
# writes the result on stdout; needs kubectl (its built-in kustomize) on PATH.
#
#   helm upgrade abcdesktop abcdesktop/abcdesktop -n abcdesktop --reuse-values \
#     --post-renderer ./manifests/helm/post-render.sh
#
# Environment:
#   GATEWAY_OVERLAY  overlay directory (default: manifests/overlays/router, abcdesktop 4.x charts)
#   GATEWAY_REPLACE  the chart's objects the overlay replaces, as Kind/name words (default:
#                    "Deployment/router-od Service/http-router HorizontalPodAutoscaler/router-od";
#                    objects the chart does not render are ignored)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
overlay="$(cd "${GATEWAY_OVERLAY:-$here/../overlays/router}" && pwd)"
replace="${GATEWAY_REPLACE:-Deployment/router-od Service/http-router HorizontalPodAutoscaler/router-od}"
kubectl="${KUBECTL:-kubectl}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/chart" "$work/all"
cat >"$work/chart/helm.yaml"
# The chart's output without the replaced objects: a delete patch per object...
{
    echo "resources: [helm.yaml]"
    echo "patches:"
    for object in $replace; do
        kind="${object%%/*}" name="${object#*/}"
        # shellcheck disable=SC2016 # `$patch` is kustomize's, not a shell variable
        printf '  - target: {kind: %s, name: %s}\n    patch: |-\n      $patch: delete\n      kind: %s\n      metadata: {name: %s}\n' \
            "$kind" "$name" "$kind" "$name"
    done
} >"$work/chart/kustomization.yaml"
# ... plus the overlay (kustomize wants it below the kustomization root: a symlink).
ln -s "$overlay" "$work/all/gateway"
mv "$work/chart" "$work/all/chart"
printf 'resources:\n  - chart\n  - gateway\n' >"$work/all/kustomization.yaml"
"$kubectl" kustomize --load-restrictor LoadRestrictionsNone "$work/all"
