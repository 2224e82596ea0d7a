#!/usr/bin/env bash
# Build the five sim2real images: isaac-datagen, trainer, exporter, jetson-runtime, gazebo-eval.
#
#   scripts/build-images.sh [--flavour cpu|vendor] [--tag TAG] [--prefix PREFIX] [IMAGE...]
#
# cpu (default): every image FROM the local Debian base (images/base/build-base.sh makes it with
#   debootstrap; nothing is pulled), Python packages from the host-side wheelhouse
#   (scripts/wheelhouse.sh, checked against the base's own interpreter). What CI and the stack test build.
# vendor: FROM each Dockerfile's default vendor image (Isaac Sim, NGC PyTorch, L4T JetPack, ROS 2 +
#   Gazebo), each with a wheelhouse for that image's Python. The engine must be able to pull them (or
#   have them loaded), and jetson-runtime is arm64: build it on the Jetson, or where buildx + QEMU can.
#
# Images are tagged PREFIX<name>:TAG (default sim2real/<name>:latest, or $SIM2REAL_IMAGE_PREFIX and
# $SIM2REAL_TAG) and also PREFIX<name>:<version>; they carry OCI labels with the version, the git
# commit (-dirty when the tree has uncommitted changes) and the commit's time. Builds use
# --network host and need no network at all. Logs: build/logs/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

FLAVOUR=cpu
PREFIX="${SIM2REAL_IMAGE_PREFIX:-sim2real/}"
TAG="${SIM2REAL_TAG:-latest}"
ALL=(isaac-datagen trainer exporter jetson-runtime gazebo-eval)
IMAGES=()
while [ $# -gt 0 ]; do
    case "$1" in
        --flavour|--flavor) FLAVOUR="$2"; shift 2 ;;
        --tag) TAG="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "build-images.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -f "images/$1/Dockerfile" ] || { echo "build-images.sh: no images/$1/Dockerfile" >&2; exit 2; }
           IMAGES+=("$1"); shift ;;
    esac
done
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=("${ALL[@]}")
case "$FLAVOUR" in cpu|vendor) ;; *) echo "build-images.sh: --flavour is cpu or vendor" >&2; exit 2 ;; esac
log() { echo "[build-images] $*" >&2; }
docker info >/dev/null 2>&1 || { log "no Docker engine answers (scripts/docker-engine.sh starts one)"; exit 1; }
# Without the buildx plugin the CLI falls back to the classic builder; say so explicitly (same result).
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

VERSION="$(sed -nE 's/^version = "([^"]+)"/\1/p' pyproject.toml | head -1)"
VCS_REF="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && VCS_REF="$VCS_REF-dirty"
CREATED="$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)"
mkdir -p build/logs
COMMON=(--network host --force-rm --build-arg "VERSION=$VERSION" --build-arg "VCS_REF=$VCS_REF" --build-arg "CREATED=$CREATED")

if [ "$FLAVOUR" = cpu ]; then
    BASE="${BASE_IMAGE:-sim2real-base:bookworm}"
    if [ -z "${BASE_IMAGE:-}" ]; then
        images/base/build-base.sh "$BASE"
    fi
    pyver="$(docker run --rm --network none --entrypoint python3 "$BASE" -c 'import platform; print(platform.python_version())')"
    WHEELHOUSE="$(scripts/wheelhouse.sh --python "$pyver" --check-image "$BASE" | tail -1)"
fi

total_start=$(date +%s)
for name in "${IMAGES[@]}"; do
    args=("${COMMON[@]}")
    if [ "$FLAVOUR" = cpu ]; then
        # ROS_SETUP empty: the CPU flavour's ROS 2 (runtime) comes from the wheels, not /opt/ros.
        args+=(--build-arg "BASE_IMAGE=$BASE" --build-arg PYTHON=python3 --build-arg "WHEELHOUSE=$WHEELHOUSE"
               --build-arg ROS_SETUP=)
        # Its ROS 2 from wheels too: the evaluator can then run the node in the loop (--policy ros2).
        if [ "$name" = gazebo-eval ]; then args+=(--build-arg EXTRAS=eval,ros); fi
    else
        # The Dockerfile's defaults name the vendor image and the Python/CPU its wheels are for; each
        # image gets a wheelhouse of its own extras, without torch (the vendor image ships it).
        wh="$(sed -nE 's/^ARG WHEELHOUSE=(.*)/\1/p' "images/$name/Dockerfile" | head -1)"
        extras="$(sed -nE 's/^ARG EXTRAS=(.*)/\1/p; s/.*"sim2real\[([a-z,]+)\] @ .*/\1/p' "images/$name/Dockerfile" | head -1)"
        tag="${wh##*/}"; py="${tag%%-*}"; py="${py#cp}"; arch="${tag#*-}"
        platform="manylinux_2_28_$arch"; [ "$arch" = aarch64 ] && platform=manylinux_2_35_aarch64
        wh="build/wheelhouse/vendor-$name"
        scripts/wheelhouse.sh --python "${py:0:1}.${py:1}" --platform "$platform" --extras "$extras" \
            --skip torch --out "$wh" >/dev/null
        args+=(--build-arg "WHEELHOUSE=$wh")
        [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ] && args+=(--platform linux/arm64)
    fi
    start=$(date +%s)
    log "building $PREFIX$name:$TAG ($FLAVOUR)"
    if ! docker build "${args[@]}" -f "images/$name/Dockerfile" -t "$PREFIX$name:$TAG" -t "$PREFIX$name:$VERSION" . \
            >"build/logs/$name.log" 2>&1; then
        tail -40 "build/logs/$name.log" >&2
        log "FAILED: $name (full log: build/logs/$name.log)"
        exit 1
    fi
    size="$(docker image inspect -f '{{.Size}}' "$PREFIX$name:$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
    log "built $PREFIX$name:$TAG in $(( $(date +%s) - start )) s ($size)"
done
log "${#IMAGES[@]} image(s) in $(( $(date +%s) - total_start )) s"
