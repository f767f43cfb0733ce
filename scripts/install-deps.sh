#!/usr/bin/env bash
# Installs what building, testing and running the native stack need, from Debian's packages.
# Idempotent: installs only what is missing. Uses sudo when not root.
# Extra package names on the command line are installed too (make format asks for clang-format).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git curl ca-certificates
  librdkafka-dev librabbitmq-dev libcurl4-openssl-dev libssl-dev uuid-dev
  nlohmann-json3-dev doctest-dev libkainjow-mustache-dev
  libhowardhinnant-date-dev tzdata libcpp-httplib-dev prometheus-cpp-dev
  libbenchmark-dev libcli11-dev libhiredis-dev
  rabbitmq-server redis-server supervisor kcat python3 python3-yaml prometheus
  nodejs npm
  "$@"
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  # nodejs from another source ships npm itself: do not fight it.
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ ${#sudo_cmd[@]} -gt 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and no sudo: install as root: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  # Keep Debian's own rabbitmq-server, redis-server and prometheus services from starting on
  # install: the project runs its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
    trap '"${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
