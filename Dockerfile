# syntax=docker/dockerfile:1
# The gateway image: a drop-in for abcdesktop's oc.nginx / route gateway.
#
#   docker build -t abcdesktop-gateway:0.1.0 .
#   docker run --rm -p 30443:30443 -p 9090:9090 \
#     -v "$PWD/keys:/config.signing:ro" -v "$PWD/keys:/config.payload:ro" abcdesktop-gateway:0.1.0 --check-config
#
# Build stage: Debian bookworm with Rust and gcc/g++ (aws-lc-sys compiles AWS-LC's C sources
# with cc; no cmake needed). Final stage: distroless "cc", which is exactly what the binary links
# (glibc and libgcc_s of the same Debian 12 as the build stage) and nothing else: no shell, no
# package manager. Its `nonroot` variant runs as uid/gid 65532, the uid the manifests pin.
# Static musl is not set up for AWS-LC here, so "static"/scratch images are not an option.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the target dir between builds (BuildKit); the
# binary is copied out of the cached target dir so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway --bin gateway \
 && install -m 0755 target/release/gateway /gateway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /gateway /usr/local/bin/gateway
USER 65532:65532
# 30443: public listener (Service port 80 -> targetPort 30443); 9090: /livez /readyz /metrics.
EXPOSE 30443 9090
ENTRYPOINT ["/usr/local/bin/gateway"]
# The Deployment mounts its ConfigMap there; without a config file the defaults and the
# original's environment variables apply (`docker run IMAGE` with no arguments).
CMD ["--config", "/etc/abcdesktop-gateway/gateway.toml"]
