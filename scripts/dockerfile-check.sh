#!/usr/bin/env bash
# Builds the real Dockerfile (the one users with internet access build) on a
# machine without a registry, by standing in local images for the two it pulls:
#
#   rust:1.95.0-slim-bookworm  Debian minbase + gcc, with this machine's Rust
#                              toolchain copied in, laid out like the official image
#   debian:bookworm-slim       the offline base from scripts/offline-images.sh
#
# Not part of CI (a release build in a container takes a while); run it after
# changing the Dockerfile. The containers still fetch crates from crates.io and
# packages from Debian, as the real build does. The stand-in carries this
# machine's CA bundle, so a TLS-inspecting proxy the host trusts is trusted in
# the build too.
set -euo pipefail
cd "$(dirname "$0")/.."

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
toolchain="$(rustc --version | awk '{print $2}')"
host="$(rustc -vV | sed -n 's/^host: //p')"
toolchain_dir="$(rustc --print sysroot)"

if ! docker image inspect tollgate-offline/debian:bookworm-slim >/dev/null 2>&1; then
    echo "run scripts/offline-images.sh first (it makes the Debian base)" >&2
    exit 1
fi
docker tag tollgate-offline/debian:bookworm-slim debian:bookworm-slim

if ! docker image inspect "rust:$toolchain-slim-bookworm" >/dev/null 2>&1; then
    echo "--- standing in rust:$toolchain-slim-bookworm (toolchain from $toolchain_dir)"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates,gcc,libc6-dev,passwd \
        --customize-hook='mkdir -p "$1"/usr/local/rustup/toolchains "$1"/usr/local/cargo/bin' \
        --customize-hook="cp -a $toolchain_dir \"\$1\"/usr/local/rustup/toolchains/$toolchain-$host" \
        --customize-hook="cp $(command -v rustup) \"\$1\"/usr/local/cargo/bin/rustup" \
        --customize-hook='for p in cargo rustc rustdoc cargo-fmt rustfmt cargo-clippy clippy-driver; do ln -s rustup "$1"/usr/local/cargo/bin/$p; done' \
        --customize-hook="printf 'version = \"12\"\ndefault_toolchain = \"$toolchain-$host\"\nprofile = \"minimal\"\n' > \"\$1\"/usr/local/rustup/settings.toml" \
        --customize-hook='chmod -R a+rwX "$1"/usr/local/rustup "$1"/usr/local/cargo' \
        --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1"/etc/ssl/certs/ca-certificates.crt' \
        bookworm - "$mirror" \
        | docker import \
            --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
            --change 'ENV CARGO_HOME=/usr/local/cargo' \
            --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "rust:$toolchain-slim-bookworm"
fi

echo "--- docker build ."
docker build -t tollgate:dockerfile-check .
docker image ls tollgate:dockerfile-check --format '{{.Repository}}:{{.Tag}}\t{{.Size}}'
docker run --rm tollgate:dockerfile-check auth-server --version
