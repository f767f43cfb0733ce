#!/usr/bin/env bash
# Measures a first `make up` as a new user on a bare Debian 12 has it: debootstrap's bookworm
# in a folder, with only make, git and ca-certificates added (to fetch this repository), then
# `time make up` on a clone of HEAD, `make emit N=3`, and how long until three mails are in the
# inbox. Prints the figures the README gives; the stack is stopped and the folder unmounted at
# the end. Needs root (debootstrap, chroot), a network to Debian's mirror and the npm registry,
# and the development stack's ports free (it runs on the same ports as `make up`).
#
#   scripts/measure-first-start.sh [FOLDER]      (default: /var/tmp/notify-first-start)
set -euo pipefail

ROOT=${1:-/var/tmp/notify-first-start}
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "measure-first-start: run as root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null

mounts=(proc sys dev dev/pts)
unmount_all() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    if mountpoint -q "$ROOT/${mounts[$i]}"; then umount "$ROOT/${mounts[$i]}"; fi
  done
}
# Removing the folder while the host's /dev or /proc is mounted in it would remove the host's.
remove_root() {
  unmount_all
  if grep -q " $ROOT/" /proc/mounts; then
    echo "measure-first-start: $ROOT still has mounts; not removed" >&2
    exit 1
  fi
  rm -rf "$ROOT"
}
in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt} "$@"
}
stop_stack() {
  if [ -d "$ROOT/root/notify" ] && mountpoint -q "$ROOT/proc"; then
    in_root bash -c 'cd /root/notify && make down >/dev/null 2>&1' || true
  fi
  unmount_all
}

[ -e "$ROOT" ] && remove_root
echo "debootstrap bookworm into $ROOT"
debootstrap bookworm "$ROOT" http://deb.debian.org/debian >"$ROOT.debootstrap.log" 2>&1
trap stop_stack EXIT
for m in "${mounts[@]}"; do mount --bind "/$m" "$ROOT/$m"; done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# A network that inspects TLS has its own authority: the host's local ones go along.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi
in_root bash -c 'apt-get update -q && apt-get install -y -q --no-install-recommends make git \
  ca-certificates && update-ca-certificates' >"$ROOT.prepare.log" 2>&1
git clone -q "$SOURCE" "$ROOT/root/notify"

echo "time make up (log: $ROOT/root/up.log)"
in_root bash -c '
  cd /root/notify
  start=$(date +%s.%N)
  make up >/root/up.log 2>&1 || { tail -n 40 /root/up.log; exit 1; }
  up=$(date +%s.%N)
  make emit N=3 >/root/emit.log 2>&1
  emitted=$(date +%s.%N)
  inbox=0
  for _ in $(seq 1 300); do
    inbox=$(curl -s http://127.0.0.1:8025/email | python3 -c "import json, sys; print(len(json.load(sys.stdin)))" || echo 0)
    [ "$inbox" -ge 3 ] && break
    sleep 0.1
  done
  done_at=$(date +%s.%N)
  deps=$(stat -c %Y node_modules/.package-lock.json)
  built=$(stat -c %Y build/build.log)
  python3 - "$start" "$deps" "$built" "$up" "$emitted" "$done_at" "$inbox" <<EOF
import sys
start, deps, built, up, emitted, done, inbox = map(float, sys.argv[1:])
print(f"make up: {up - start:.0f} s (packages and npm ci {deps - start:.0f} s, build "
      f"{built - deps:.0f} s, start {up - built:.0f} s); make emit N=3: {emitted - up:.1f} s; "
      f"{int(inbox)} mails in the inbox {done - emitted:.2f} s after the emit")
EOF
  grep -E "newly installed|^Need to get|^Fetched .* MB" /root/up.log || true
'
