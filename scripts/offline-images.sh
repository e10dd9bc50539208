#!/usr/bin/env bash
# Builds every image docker-compose.yml needs on a machine that cannot pull from
# any registry (this project's CI): the Debian base and PostgreSQL images from
# Debian's packages with mmdebstrap, and the Tollgate image from binaries
# compiled on the host. Afterwards the stack runs with
#
#   docker-compose -f docker-compose.yml -f docker-compose.offline.yml up
#
# Usage: scripts/offline-images.sh [--profile release|dev]
#   --profile dev   reuse the debug binaries `cargo test` already built (CI);
#                   release (the default) is what the image sizes in the docs
#                   are measured with.
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian).
#
# The host must run Debian bookworm (or have a glibc at least as old as
# bookworm's 2.36), since host-built binaries run on a bookworm base.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        *) echo "usage: $0 [--profile release|dev]" >&2; exit 2 ;;
    esac
done
# Cargo's own target directory, wherever CARGO_TARGET_DIR puts it.
cargo_target="${CARGO_TARGET_DIR:-target}"
case "$profile" in
    release) target_dir="$cargo_target/release" ;;
    dev) target_dir="$cargo_target/debug" ;;
    *) echo "unknown profile $profile" >&2; exit 2 ;;
esac

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base_image=tollgate-offline/debian:bookworm-slim
postgres_image=tollgate-offline/postgres:15

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if ! command -v mmdebstrap >/dev/null; then
    echo "--- installing mmdebstrap"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

# What debian:bookworm-slim leaves out: documentation, manuals and translations.
slim=(
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'
)

# The base: Debian's minimal system plus CA certificates and the user tools the
# runtime set-up uses, like debian:bookworm-slim.
if ! have_image "$base_image"; then
    echo "--- building $base_image with mmdebstrap"
    as_root mmdebstrap --quiet --variant=minbase --include=ca-certificates,passwd \
        "${slim[@]}" bookworm - "$mirror" \
        | docker import --change 'CMD ["/bin/bash"]' - "$base_image"
fi

# PostgreSQL 15 from Debian, with an entry point that honours the official
# image's environment (docker/offline/postgres-entrypoint.sh).
if ! have_image "$postgres_image"; then
    echo "--- building $postgres_image with mmdebstrap"
    as_root mmdebstrap --quiet --variant=minbase --include=postgresql-15,ca-certificates \
        "${slim[@]}" \
        --customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15/main' \
        --customize-hook='mkdir -p "$1"/docker-entrypoint-initdb.d' \
        --customize-hook='copy-in docker/offline/postgres-entrypoint.sh /usr/local/bin' \
        bookworm - "$mirror" \
        | docker import \
            --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV PGDATA=/var/lib/postgresql/data' \
            --change 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]' \
            --change 'EXPOSE 5432' \
            - "$postgres_image"
fi

# The Tollgate image: the Dockerfile's runtime stage over host-built binaries.
binaries=(auth-server resource-server notes-store ledger client-app grpc-health)
if [ "$profile" = release ]; then
    echo "--- cargo build --release"
    cargo build --release --locked $(printf -- '--bin %s ' "${binaries[@]}")
else
    # Every target, as `cargo test --workspace` builds them: the same feature
    # set, so after the tests (as in CI) this compiles nothing.
    echo "--- cargo build (dev profile)"
    cargo build --locked --workspace --all-targets
fi
context=target/offline-image
rm -rf "$context"
mkdir -p "$context/bin"
cp docker/offline/Dockerfile docker/runtime-setup.sh docker/entrypoint.sh docker/dev-secrets.sh "$context/"
for bin in "${binaries[@]}"; do
    cp "$target_dir/$bin" "$context/bin/"
done
# Release binaries lose their symbols as in the Dockerfile; debug binaries
# lose only their debug info (backtraces keep function names). Unstripped,
# the six debug binaries are about 1.5 GB, copied twice (build context and
# image layer): CI ran out of disk on exactly that.
if [ "$profile" = release ]; then
    strip "$context"/bin/*
else
    strip --strip-debug "$context"/bin/*
fi

# Every Tollgate service in docker-compose.yml runs this one image; building it
# once sends the context once (docker-compose build would send it per service).
echo "--- docker build tollgate:dev (docker-compose.offline.yml's context)"
docker build --quiet --tag tollgate:dev "$context"

docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
    | grep -E '^(tollgate|tollgate-offline/)' || true
