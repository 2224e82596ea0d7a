#!/usr/bin/env bash
# Download every wheel the images need on the host, so that `docker build` installs with
# `pip install --no-index` and never reaches a registry from inside a container. The same folder
# is the recipe for air-gapped robots: copy it over and build there.
#
#   scripts/wheelhouse.sh [--python X.Y[.Z]] [--platform manylinux_2_28_x86_64] [--out DIR]
#                         [--check-image IMAGE] [--extras E[,E]] [--skip NAME[,NAME]] [--lock]
#
# Layout of DIR (default build/wheelhouse/cp<XY>-<arch>, gitignored):
#   wheels/                          third-party wheels, pinned by images/constraints-<DIR's name>.txt
#   wheels/requirements-<extra>.txt  the core dependencies plus one extra's, read from pyproject.toml
#   project/sim2real-<version>-py3-none-any.whl   this repository, built reproducibly
#                                    (SOURCE_DATE_EPOCH = the last commit's time)
# wheels/ is refilled only when pyproject's dependencies, the constraints or the target change;
# project/ is rebuilt every time (seconds), byte-identical when the sources are.
#
# Same Python X.Y and CPU as the host: `pip wheel` (pure-Python sdists become wheels here). Another
# target (a Jetson: --python 3.10 --platform manylinux_2_35_aarch64): `pip download --only-binary`,
# with the pure-Python wheels built here. --check-image runs `pip install --dry-run --no-index`
# inside IMAGE (no network) with the target's own interpreter and fetches what it misses: pip on
# the host evaluates markers such as `python_full_version < "3.11.3"` for the host's Python, not
# the image's. --extras downloads only what those extras need (default: all of them; one image's
# vendor build needs only its own). --skip leaves out what a vendor base image already ships (torch in NGC PyTorch).
# --lock (or a target without a constraints file yet) resolves afresh and writes the target's
# constraints file (for the host's own target, from the dev venv's versions where it has them):
# review the diff, then commit it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
HOST_PY="$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
HOST_ARCH="$(uname -m)"
TARGET_PY="$HOST_PY"; TARGET_PLATFORM=""; OUT=""; LOCK=0; CHECK_IMAGE=""; SKIP=""
EXTRAS="datagen train export runtime ros eval"
WANTED=""

while [ $# -gt 0 ]; do
    case "$1" in
        --python) TARGET_PY="$2"; shift 2 ;;
        --platform) TARGET_PLATFORM="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --check-image) CHECK_IMAGE="$2"; shift 2 ;;
        --skip) SKIP="$2"; shift 2 ;;
        --extras) WANTED="$2"; shift 2 ;;
        --lock) LOCK=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "wheelhouse.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$TARGET_PLATFORM" in
    "") ARCH="$HOST_ARCH"; TARGET_PLATFORM="manylinux_2_28_$ARCH" ;;
    *_aarch64) ARCH=aarch64 ;;
    *_x86_64) ARCH=x86_64 ;;
    *) echo "wheelhouse.sh: --platform must end in _x86_64 or _aarch64 (got $TARGET_PLATFORM)" >&2; exit 2 ;;
esac
TARGET_XY="$(echo "$TARGET_PY" | cut -d. -f1,2)"
TARGET_TAG="cp${TARGET_XY/./}-$ARCH"
OUT="${OUT:-build/wheelhouse/$TARGET_TAG}"
# One constraints file per wheelhouse: images/constraints-cp311-x86_64.txt for the CPU flavour.
CONSTRAINTS="images/constraints-$(basename "$OUT").txt"
NATIVE=0
[ "$TARGET_XY" = "$HOST_PY" ] && [ "$ARCH" = "$HOST_ARCH" ] && NATIVE=1
# pip matches --platform tags exactly: name every manylinux_2_N up to the target's glibc.
PLATFORMS=(--platform "$TARGET_PLATFORM" --platform "manylinux2014_$ARCH")
glibc_minor="$(echo "$TARGET_PLATFORM" | sed -nE 's/^manylinux_2_([0-9]+)_.*/\1/p')"
for minor in $(seq 17 "${glibc_minor:-17}"); do PLATFORMS+=(--platform "manylinux_2_${minor}_$ARCH"); done
log() { echo "[wheelhouse] $*" >&2; }
# pip, minus the noise of a configured local index that lacks a project.
pip_() { $PY -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

mkdir -p "$OUT/wheels" "$OUT/project"

# The requirement lists, straight from pyproject.toml: core + each extra. The images install
# these specs as they are (vendor packages satisfy them); what gets downloaded is pinned by the
# constraints file, torch included (the Makefile's CPU wheel).
$PY - "$OUT/wheels" "$SKIP" "$WANTED" $EXTRAS <<'PYEOF'
import re
import sys
from pathlib import Path
try:
    import tomllib
except ImportError:  # Python 3.10: pip carries tomli
    from pip._vendor import tomli as tomllib
out, skip, extras = Path(sys.argv[1]), {s for s in sys.argv[2].split(",") if s}, sys.argv[4:]
wanted = {e for e in sys.argv[3].split(",") if e} or set(extras)
unknown = wanted - set(extras)
if unknown:
    sys.exit(f"wheelhouse.sh: unknown extra(s): {', '.join(sorted(unknown))}")
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
core = project["dependencies"]
everything = set(core)

def write(path, text):  # untouched when unchanged: docker's COPY cache sees file times
    if not path.exists() or path.read_text() != text:
        path.write_text(text)

def name(spec):
    return re.split(r"[ <>=!~;\[]", spec, maxsplit=1)[0].lower()

for extra in extras:
    reqs = project["optional-dependencies"][extra]
    if extra in wanted:
        everything.update(reqs)
    write(out / f"requirements-{extra}.txt",
          f"# core + [{extra}] of sim2real {project['version']}, from pyproject.toml by scripts/wheelhouse.sh\n"
          + "\n".join(core + reqs) + "\n")
write(out / "requirements-all.txt", "\n".join(sorted(r for r in everything if name(r) not in skip)) + "\n")
PYEOF

[ -s "$CONSTRAINTS" ] || LOCK=1
key() { { cat "$OUT/wheels"/requirements-*.txt "$CONSTRAINTS"; echo "$TARGET_PY $TARGET_PLATFORM $CHECK_IMAGE $SKIP $WANTED"; } | sha256sum | cut -c1-16; }
if [ "$LOCK" = 0 ] && [ "$(cat "$OUT/wheels/.stamp" 2>/dev/null)" = "$(key)" ]; then
    log "third-party wheels up to date in $OUT/wheels ($(du -sh "$OUT/wheels" | cut -f1))"
else
    start=$(date +%s)
    rm -f "$OUT/wheels/.stamp"
    find "$OUT/wheels" -name '*.whl' -delete
    PIN=(-c "$CONSTRAINTS")
    if [ "$LOCK" = 1 ]; then
        # A fresh lock for the host's own target takes the dev venv's versions (what the tests ran
        # against); another target resolves afresh for its Python.
        : >"$SCRATCH/venv-pins.txt"
        [ "$NATIVE" = 1 ] && { $PY -m pip freeze --exclude-editable 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' >"$SCRATCH/venv-pins.txt" || true; }
        PIN=(-c "$SCRATCH/venv-pins.txt")
    fi
    reqs=(-r "$OUT/wheels/requirements-all.txt")
    if [ "$NATIVE" = 1 ]; then
        log "pip wheel for Python $TARGET_XY ($ARCH) into $OUT/wheels"
        pip_ wheel --quiet --wheel-dir "$OUT/wheels" "${PIN[@]}" "${reqs[@]}"
    else
        log "pure-Python wheels built on the host, then binary wheels for Python $TARGET_PY, $TARGET_PLATFORM"
        pip_ wheel --quiet --wheel-dir "$SCRATCH/host" "${PIN[@]}" "${reqs[@]}"
        cp "$SCRATCH"/host/*-none-any.whl "$OUT/wheels/"
        pip_ download --quiet --dest "$OUT/wheels" --find-links "$OUT/wheels" --only-binary=:all: \
            --python-version "$TARGET_PY" "${PLATFORMS[@]}" "${PIN[@]}" "${reqs[@]}"
    fi
    if [ -n "$CHECK_IMAGE" ]; then
        for attempt in 1 2 3 4 5; do
            if docker run --rm --network none --user 0 -v "$PWD/$OUT/wheels:/wheels:ro" --entrypoint /bin/sh \
                "$CHECK_IMAGE" -c 'python3 -m venv /tmp/v && /tmp/v/bin/python -m pip install --quiet --dry-run \
                --no-index --find-links /wheels -r /wheels/requirements-all.txt' >"$SCRATCH/check.log" 2>&1; then
                log "complete for $CHECK_IMAGE's $(docker run --rm --network none --entrypoint python3 "$CHECK_IMAGE" -V)"
                break
            fi
            missing="$(sed -nE 's/.*satisfies the requirement ([^;]+).*/\1/p' "$SCRATCH/check.log" | head -1 | tr -d ' ')"
            if [ -z "$missing" ] || [ "$attempt" = 5 ]; then
                cat "$SCRATCH/check.log" >&2; log "the wheelhouse does not install in $CHECK_IMAGE"; exit 1
            fi
            log "$CHECK_IMAGE also needs $missing (a marker the host's Python evaluates differently): fetching it"
            pip_ download --quiet --no-deps --dest "$OUT/wheels" --only-binary=:all: \
                --python-version "$TARGET_PY" "${PLATFORMS[@]}" "${PIN[@]}" "$missing"
        done
    fi
    if [ "$LOCK" = 1 ]; then
        { echo "# Pinned versions of everything the images install: scripts/wheelhouse.sh --lock rewrites it"
          echo "# from a fresh resolution of pyproject.toml's dependencies for $TARGET_TAG (review the diff, then commit)."
          find "$OUT/wheels" -name '*.whl' -printf '%f\n' | cut -d- -f1,2 | sed -E 's/-/==/; s/\+[A-Za-z0-9.]+$//' \
            | tr '_' '-' | tr 'A-Z' 'a-z' | sort -u
        } >"$CONSTRAINTS"
        log "wrote $CONSTRAINTS ($(grep -vc '^#' "$CONSTRAINTS") pins)"
    fi
    unpinned="$(find "$OUT/wheels" -name '*.whl' -printf '%f\n' | cut -d- -f1 | tr '_A-Z' '-a-z' | sort -u \
        | while read -r dist; do grep -qiE "^${dist}==" "$CONSTRAINTS" || echo "$dist"; done | tr '\n' ' ')"
    [ -z "$unpinned" ] || log "WARNING: not pinned in $CONSTRAINTS: $unpinned(run scripts/wheelhouse.sh --lock and commit it)"
    key >"$OUT/wheels/.stamp"
    log "$(find "$OUT/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT/wheels" | cut -f1), in $(( $(date +%s) - start )) s"
fi

# This repository as a wheel, reproducible: fixed timestamps, built from a scratch copy of the tree.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}"
mkdir -p "$SCRATCH/src" "$SCRATCH/project"
git ls-files -co --exclude-standard -- pyproject.toml services README.md | tar -cf - -T - | tar -C "$SCRATCH/src" -xf -
find "$SCRATCH/src" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
pip_ wheel --quiet --no-deps --no-build-isolation --wheel-dir "$SCRATCH/project" "$SCRATCH/src" >/dev/null 2>&1 \
    || pip_ wheel --quiet --no-deps --wheel-dir "$SCRATCH/project" "$SCRATCH/src"
# Replaced only when its bytes change, so that an unchanged tree keeps docker's cache.
new="$(ls "$SCRATCH"/project/*.whl)"
if ! cmp -s "$new" "$OUT/project/$(basename "$new")"; then
    rm -f "$OUT"/project/*.whl
    mv "$new" "$OUT/project/"
fi
log "project wheel: $(ls "$OUT"/project/*.whl) (sha256 $(sha256sum "$OUT"/project/*.whl | cut -c1-12))"
echo "$OUT"
