#!/usr/bin/env bash
# Installs the npm tools (maildev) with `npm ci` when node_modules is missing or older than
# package-lock.json. Safe to run concurrently: the second caller waits for the first.
#
# npm is the one on the PATH; without one, npm $NPM_VERSION from the npm registry, checked
# against its published integrity and kept in .cache/ (git-ignored), run by Debian's nodejs.
# Debian's own npm package would bring hundreds of node-* packages along, a good part of a
# first make up.
set -euo pipefail
cd "$(dirname "$0")/.."

# npm 9 is the newest whose engines accept Debian 12's nodejs (18.x).
NPM_VERSION=9.9.4
NPM_INTEGRITY=sha512-NzcQiLpqDuLhavdyJ2J3tGJ/ni/ebcqHVFZkv1C4/6lblraUPbPgCJ4Vhb4oa3FFhRa2Yj9gA58jGH/ztKueNQ==
NPM_DIR=.cache/npm-$NPM_VERSION

fetch_npm() {
  local tarball=$NPM_DIR.tgz actual
  echo "npm $NPM_VERSION from registry.npmjs.org into $NPM_DIR"
  mkdir -p .cache
  rm -rf "$NPM_DIR" "$NPM_DIR.tmp" "$tarball"
  curl -fsS --retry 3 -o "$tarball" "https://registry.npmjs.org/npm/-/npm-$NPM_VERSION.tgz"
  actual=sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512")
    .update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tarball")
  if [ "$actual" != "$NPM_INTEGRITY" ]; then
    echo "node-deps: npm-$NPM_VERSION.tgz is not the published one: $actual" >&2
    rm -f "$tarball"
    exit 1
  fi
  mkdir "$NPM_DIR.tmp"
  tar -xzf "$tarball" -C "$NPM_DIR.tmp" --strip-components=1 --no-same-owner
  mv "$NPM_DIR.tmp" "$NPM_DIR"
  rm -f "$tarball"
}

npm_cmd() {
  if command -v npm >/dev/null 2>&1; then
    npm "$@"
  else
    [ -f "$NPM_DIR/bin/npm-cli.js" ] || fetch_npm
    node "$NPM_DIR/bin/npm-cli.js" "$@"
  fi
}

exec 9<package.json
flock 9
if [ ! -x node_modules/.bin/maildev ] || [ ! -e node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "npm ci (node_modules missing or stale)"
  npm_cmd ci --no-audit --no-fund
fi
