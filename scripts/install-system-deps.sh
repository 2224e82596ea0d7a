#!/usr/bin/env bash
# System packages the tests need: a real redis-server for the queue's integration tests, and
# qemu-user, whose x86-64 emulator (an AVX2-only CPU) runs the INT8 tests of the other ISA class, and
# the SDFormat checker (`ign sdf -k`: sdformat-sdf, ignition-tools, libsdformat-dev) that every
# generated Gazebo world must pass.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ign sdf --help >/dev/null 2>&1 || missing+=(sdformat-sdf ignition-tools libsdformat-dev)
case "$(uname -m)" in
  x86_64|amd64) command -v qemu-x86_64 >/dev/null 2>&1 || missing+=(qemu-user) ;;
esac
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed ${missing[*]}"
