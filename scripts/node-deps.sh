#!/usr/bin/env bash
# Installs the npm tools (maildev) with `npm ci` when node_modules is missing or older than
# package-lock.json. Safe to run concurrently: the second caller waits for the first.
set -euo pipefail
cd "$(dirname "$0")/.."

exec 9<package.json
flock 9
if [ ! -x node_modules/.bin/maildev ] || [ ! -e node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "npm ci (node_modules missing or stale)"
  npm ci --no-audit --no-fund
fi
