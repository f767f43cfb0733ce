#!/usr/bin/env bash
# ready.sh PORT [PATH]: exits 0 when http://127.0.0.1:PORT/PATH (default /readyz) answers
# 200. The container healthcheck of the services: the slim runtime image has bash but no curl
# or wget, and bash's /dev/tcp is all a local GET needs.
set -eu
port=$1
path=${2:-/readyz}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
read -r -t 5 _ status _ <&3
[ "$status" = 200 ]
