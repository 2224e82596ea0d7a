#!/usr/bin/env bash
# Build the local base image `sim2real-base:bookworm` from Debian packages alone (debootstrap +
# docker import): the CPU flavour of every image starts FROM it, and nothing is pulled from a
# container registry. The root filesystem tarball is cached under build/base/ (gitignored), so a
# rerun only re-imports it (seconds); the tarball is rebuilt when the package list below changes.
#
#   images/base/build-base.sh [TAG]          TAG defaults to sim2real-base:bookworm
#   MIRROR=http://deb.debian.org/debian      the Debian mirror debootstrap uses
#
# Packages: python3 (3.11 on bookworm, the host's version, so host-downloaded wheels fit),
# python3-venv (ensurepip: pip in the venv), ca-certificates, libgomp1 (OpenMP for onnxruntime),
# redis-server (the eval profile's queue runs from this same base), tini (PID 1 that reaps and
# forwards signals).
set -euo pipefail
cd "$(dirname "$0")/../.."

TAG="${1:-sim2real-base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,ca-certificates,libgomp1,redis-server,tini"
CACHE="build/base"
KEY="$(printf '%s %s %s' "$SUITE" "$PACKAGES" "$(sha256sum "$0" | cut -c1-16)" | sha256sum | cut -c1-16)"
TARBALL="$CACHE/rootfs-$SUITE-$KEY.tar"

log() { echo "[build-base] $*" >&2; }

if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null 2>&1 || {
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    [ "$(id -u)" -eq 0 ] || { log "debootstrap needs root"; exit 1; }
    mkdir -p "$CACHE"
    ROOT="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf "$ROOT"' EXIT
    log "debootstrap $SUITE ($PACKAGES) into $ROOT"
    start=$(date +%s)
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -30 "$CACHE/debootstrap.log" >&2; exit 1; }
    # Slim it: apt lists and caches, docs, man pages and locales are not needed in an image.
    chroot "$ROOT" apt-get clean
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/usr/share/doc/* \
           "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log "$ROOT"/tmp/*
    find "$ROOT"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'en*' -exec rm -rf {} + 2>/dev/null || true
    # The redis-server package enables a system service; in a container it is started by hand.
    rm -f "$ROOT"/etc/systemd/system/multi-user.target.wants/redis-server.service
    # A clean resolv.conf/hostname: docker bind-mounts its own at run time.
    : >"$ROOT/etc/resolv.conf"; echo localhost >"$ROOT/etc/hostname"
    tar --numeric-owner -C "$ROOT" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    find "$CACHE" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "$(basename "$TARBALL")" -delete
    log "rootfs cached: $TARBALL ($(du -h "$TARBALL" | cut -f1), $(( $(date +%s) - start )) s)"
fi

# Re-import only when the image is missing or was made from another tarball.
if [ "$(docker image inspect -f '{{ index .Config.Labels "org.sim2real.rootfs" }}' "$TAG" 2>/dev/null)" = "$KEY" ]; then
    log "$TAG is up to date"
    exit 0
fi
log "importing $TARBALL as $TAG"
docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.sim2real.rootfs=$KEY org.opencontainers.image.title=sim2real-base org.opencontainers.image.description=\"Debian $SUITE minbase with python3, built by images/base/build-base.sh\"" \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG" <"$TARBALL" >/dev/null
log "$TAG imported"
