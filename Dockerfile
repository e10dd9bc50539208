# One image for every Tollgate service; the service is chosen by the command
# (auth-server, resource-server, notes-store, ledger, client-app). See docs/deployment.md.
#
#   docker build -t tollgate:dev .
#
# Machines without a registry (like this project's CI) build the same runtime
# image from host-compiled binaries instead: scripts/offline-images.sh.

ARG RUST_VERSION=1.95.0

# --- Build stages -------------------------------------------------------------
# cargo-chef splits the build in two: the dependency graph (recipe.json) changes
# rarely, so the layer that compiles all dependencies is reused until Cargo.lock
# changes, and a source edit recompiles only the workspace's own crates.
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
        --bin auth-server --bin resource-server --bin notes-store --bin ledger \
        --bin client-app --bin grpc-health \
    && mkdir /out \
    && cp target/release/auth-server target/release/resource-server \
          target/release/notes-store target/release/ledger target/release/client-app \
          target/release/grpc-health /out/ \
    && strip /out/*

# --- Runtime ------------------------------------------------------------------
# Debian slim with CA certificates only: no compiler, no package caches, no
# shell tools beyond the base system. Runs as an unprivileged user.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
COPY docker/runtime-setup.sh /tmp/runtime-setup.sh
RUN sh /tmp/runtime-setup.sh && rm /tmp/runtime-setup.sh
COPY docker/entrypoint.sh /usr/local/bin/tollgate-entrypoint
COPY docker/dev-secrets.sh /usr/local/bin/tollgate-dev-secrets
COPY --from=builder /out/ /usr/local/bin/
USER tollgate
WORKDIR /home/tollgate
# glibc raises its mmap threshold after a large block is freed, so argon2id's
# 19 MiB per password check would come from the heap afterwards and stay
# resident (34 MiB idle instead of 14 after the bootstrap's checks). A fixed
# threshold keeps such blocks mmapped and gives them back when freed
# (docs/performance.md).
ENV MALLOC_MMAP_THRESHOLD_=131072
ENTRYPOINT ["/usr/local/bin/tollgate-entrypoint"]
CMD ["auth-server"]
