#!/usr/bin/env bash
# System packages the test suite needs beyond PyPI: Chromium for the web UI tests (Playwright drives the
# system browser; `playwright install` downloads a browser build of its own, which the test machines
# cannot fetch). Installs with apt-get when missing; when it cannot (not root, no apt), it says so and
# exits 0: the web UI tests then fail with the same message instead of being skipped.
set -euo pipefail

find_chromium() {
    local name
    for name in chromium chromium-browser google-chrome; do
        if command -v "$name" > /dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if find_chromium > /dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null 2>&1; then
    echo "tools/test_deps.sh: no Chromium found and cannot install it (needs root and apt-get):" \
        "run 'apt-get install chromium' as root; the web UI tests fail until then" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# An empty or stale package list finds no candidate: update once, then install.
if ! apt-get install -y -q --no-install-recommends chromium > /dev/null 2>&1; then
    apt-get update -q > /dev/null
    apt-get install -y -q --no-install-recommends chromium > /dev/null
fi
find_chromium > /dev/null || { echo "tools/test_deps.sh: chromium installed but not on PATH" >&2; exit 1; }
