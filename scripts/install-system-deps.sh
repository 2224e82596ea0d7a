#!/usr/bin/env bash
# System packages the tests need: a real redis-server for the queue's integration tests.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
echo "installed redis-server $(redis-server --version | awk '{print $3}')"
