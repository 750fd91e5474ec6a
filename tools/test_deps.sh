#!/usr/bin/env bash
# System packages the test suite needs beyond PyPI, installed with apt-get when missing:
# - Chromium for the web UI tests (Playwright drives the system browser; `playwright install` downloads a
#   browser build of its own, which the test machines cannot fetch);
# - RabbitMQ itself (Debian's rabbitmq-server, with Erlang): the definitions round-trip test starts a node
#   of its own on free ports. The package is installed with a policy-rc.d that keeps its service from
#   starting (the tests never use the system node on 5672);
# - rabbitmqadmin, the management CLI the HTTP API tests drive. Debian ships it inside rabbitmq-server;
#   when the package cannot be installed whole, only that one script is taken from it (unpacked);
# - Go and Debian's packaged AMQP client for it, which tools/streamread (the stream benchmark's reader, built
#   by its test) compiles against.
# When it cannot install (not root, no apt), it says so and exits 0: the tests that need the tool then fail
# with the same message instead of being skipped.
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

can_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1
}

updated=
apt_update_once() {
    if [ -z "$updated" ]; then
        apt-get update -q > /dev/null
        updated=1
    fi
}

export DEBIAN_FRONTEND=noninteractive

if ! find_chromium > /dev/null; then
    if can_install; then
        # An empty or stale package list finds no candidate: update once, then install.
        if ! apt-get install -y -q --no-install-recommends chromium > /dev/null 2>&1; then
            apt_update_once
            apt-get install -y -q --no-install-recommends chromium > /dev/null
        fi
        find_chromium > /dev/null || { echo "tools/test_deps.sh: chromium installed but not on PATH" >&2; exit 1; }
    else
        echo "tools/test_deps.sh: no Chromium found and cannot install it (needs root and apt-get):" \
            "run 'apt-get install chromium' as root; the web UI tests fail until then" >&2
    fi
fi

if ! command -v rabbitmq-server > /dev/null 2>&1; then
    if can_install; then
        blocker=/usr/sbin/policy-rc.d
        had_blocker=
        [ -e "$blocker" ] && had_blocker=1
        if [ -z "$had_blocker" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$blocker"
            chmod 0755 "$blocker"
        fi
        status=0
        if ! apt-get install -y -q --no-install-recommends rabbitmq-server > /dev/null 2>&1; then
            apt_update_once
            apt-get install -y -q --no-install-recommends rabbitmq-server > /dev/null || status=$?
        fi
        [ -z "$had_blocker" ] && rm -f "$blocker"
        [ "$status" = 0 ] || { echo "tools/test_deps.sh: installing rabbitmq-server failed" >&2; exit 1; }
    else
        echo "tools/test_deps.sh: no rabbitmq-server found and cannot install it (needs root and apt-get):" \
            "run 'apt-get install rabbitmq-server' as root; the RabbitMQ round-trip test fails until then" >&2
    fi
fi

if ! command -v rabbitmqadmin > /dev/null 2>&1; then
    if can_install; then
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        if ! (cd "$work" && apt-get download -q rabbitmq-server > /dev/null 2>&1); then
            apt_update_once
            (cd "$work" && apt-get download -q rabbitmq-server > /dev/null)
        fi
        dpkg-deb -x "$work"/rabbitmq-server_*.deb "$work/root"
        install -m 0755 "$work/root/usr/bin/rabbitmqadmin" /usr/local/bin/rabbitmqadmin
        command -v rabbitmqadmin > /dev/null || { echo "tools/test_deps.sh: rabbitmqadmin not on PATH" >&2; exit 1; }
    else
        echo "tools/test_deps.sh: no rabbitmqadmin found and cannot install it (needs root and apt-get):" \
            "run 'apt-get install rabbitmq-server' as root; the rabbitmqadmin tests fail until then" >&2
    fi
fi

if ! command -v go > /dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/rabbitmq/amqp091-go ]; then
    if can_install; then
        packages="golang-go golang-github-rabbitmq-amqp091-go-dev"
        if ! apt-get install -y -q --no-install-recommends $packages > /dev/null 2>&1; then
            apt_update_once
            apt-get install -y -q --no-install-recommends $packages > /dev/null
        fi
        command -v go > /dev/null || { echo "tools/test_deps.sh: go installed but not on PATH" >&2; exit 1; }
    else
        echo "tools/test_deps.sh: no Go or amqp091-go found and cannot install them (needs root and apt-get):" \
            "run 'apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev' as root; the streamread" \
            "tests fail until then" >&2
    fi
fi
