# syntax=docker/dockerfile:1
# The gateway image: a drop-in for abcdesktop's oc.nginx / route gateway, with keys-tool beside it
# (`kubectl exec deploy/router-od -- keys-tool inspect "$TOKEN" --signing-key ...`).
#
#   docker build -t abcdesktop-gateway:0.1.0 .
#   docker run --rm -p 30443:30443 -p 9090:9090 \
#     -v "$PWD/keys:/config.signing:ro" -v "$PWD/keys:/config.payload:ro" abcdesktop-gateway:0.1.0 --check-config
#
# Build stage: Debian bookworm with Rust and gcc/g++ (aws-lc-sys compiles AWS-LC's C sources
# with cc; no cmake needed). Final stage: distroless "cc", which is exactly what the binaries
# link (glibc and libgcc_s of the same Debian 12 as the build stage) and nothing else: no shell,
# no package manager. Its `nonroot` variant runs as uid/gid 65532, the uid the manifests pin.
# Static musl is not set up for AWS-LC here, so "static"/scratch images are not an option.
#
# Base images: the defaults below are TAGS, not pinned. The release workflow
# (.github/workflows/release.yml) resolves each tag to its digest once per release and passes
# `--build-arg RUST_IMAGE=rust:1.95-bookworm@sha256:... --build-arg RUNTIME_IMAGE=...@sha256:...`,
# so every platform of a release is built from the same bytes, recorded in its provenance. Pin
# the same way for a local build that must be reproducible.
#
# scripts/check-release-build.sh runs the `cargo build` line below exactly as written here (CI).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the target dir between builds (BuildKit); the
# binaries are copied out of the cached target dir so the next stage can see them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway -p keys-tool \
 && install -D -m 0755 -t /out target/release/gateway target/release/keys-tool

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/gateway /out/keys-tool /usr/local/bin/
USER 65532:65532
# 30443: public listener (Service port 80 -> targetPort 30443); 9090: /livez /readyz /metrics.
EXPOSE 30443 9090
ENTRYPOINT ["/usr/local/bin/gateway"]
# The Deployment mounts its ConfigMap there; without a config file the defaults and the
# original's environment variables apply (`docker run IMAGE` with no arguments).
CMD ["--config", "/etc/abcdesktop-gateway/gateway.toml"]
