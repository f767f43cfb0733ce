#!/usr/bin/env bash
# Installs what building, testing and running the native stack need, from Debian's packages.
# Idempotent: installs only what is missing. Uses sudo when not root.
#
#   scripts/install-deps.sh [--build] [--run] [--dev] [--missing] [PACKAGE...]
#
# With no option, all three sets: --build (compiler, cmake, the libraries' -dev packages),
# --run (the brokers, supervisor, Prometheus, node for maildev), --dev (only tests, benchmarks
# and make chaos use them). make up installs --build, then --run while it compiles. Extra
# package names on the command line are installed too (make format asks for clang-format).
# --missing lists what is missing of them, one a line, and installs nothing.
set -euo pipefail

# --build. Every -dev package is here: tests/compose/check_compose.py compares them with the
# Dockerfile's build stage (libbenchmark-dev only make bench uses, but it is small).
packages=(
  build-essential cmake pkg-config git ca-certificates
  librdkafka-dev librabbitmq-dev libcurl4-openssl-dev libssl-dev uuid-dev
  nlohmann-json3-dev doctest-dev libkainjow-mustache-dev
  libhowardhinnant-date-dev libcpp-httplib-dev prometheus-cpp-dev
  libbenchmark-dev libcli11-dev libhiredis-dev
)
build_packages=("${packages[@]}")
# Only npm's node: npm itself comes from the npm registry (scripts/node-deps.sh), as Debian's
# npm package brings hundreds of node-* packages along.
run_packages=(
  rabbitmq-server redis-server supervisor prometheus nodejs python3 curl tzdata
)
dev_packages=(
  kcat python3-yaml
)

packages=()
sets=0
list_missing=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) packages+=("${build_packages[@]}") sets=1 ;;
    --run) packages+=("${run_packages[@]}") sets=1 ;;
    --dev) packages+=("${dev_packages[@]}") sets=1 ;;
    --missing) list_missing=1 ;;
    -*)
      echo "install-deps: unknown option $1 (--build, --run, --dev, --missing)" >&2
      exit 2
      ;;
    *) break ;;
  esac
  shift
done
if [ $sets -eq 0 ]; then
  packages+=("${build_packages[@]}" "${run_packages[@]}" "${dev_packages[@]}")
fi
packages+=("$@")

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  # nodejs from another source (NodeSource, nvm) is as good: do not fight it.
  if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ $list_missing -eq 1 ]; then
  if [ ${#missing[@]} -gt 0 ]; then printf '%s\n' "${missing[@]}"; fi
  exit 0
fi

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
