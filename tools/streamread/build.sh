#!/bin/sh
# Build streamread against Debian's packaged AMQP client
# (apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev), in GOPATH mode.
# Output: ${STREAMREAD_BIN:-/tmp/streamread/streamread}. Nothing is written into this directory.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${STREAMREAD_BIN:-/tmp/streamread/streamread}
gocode=/usr/share/gocode
if ! command -v go > /dev/null 2>&1; then
	echo "build.sh: go not found; apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev" >&2
	exit 1
fi
if [ ! -d "$gocode/src/github.com/rabbitmq/amqp091-go" ]; then
	echo "build.sh: $gocode/src/github.com/rabbitmq/amqp091-go not found;" >&2
	echo "          apt-get install golang-github-rabbitmq-amqp091-go-dev" >&2
	exit 1
fi
mkdir -p "$(dirname "$bin")"
cd "$here"
export GO111MODULE=off GOPATH="$gocode" GOFLAGS=
export GOCACHE=${GOCACHE:-/tmp/streamread/gocache}
go vet .
go build -trimpath -o "$bin" .
echo "built $bin"
