#!/usr/bin/env bash
# Measures a first `make up` as a new user on a bare Debian 12 has it: debootstrap's bookworm
# in a folder, with only make, git and ca-certificates added (to fetch this repository), then
# `time make up` on a clone of HEAD, `make emit N=3`, and how long until three mails are in the
# inbox. Prints the figures the README gives and what ran when (apt, the build, npm ci, the
# stack's start; make up overlaps some of them); the stack is stopped and the folder unmounted
# at the end. Needs root (debootstrap, chroot), a network to Debian's mirror and the npm
# registry, and the development stack's ports free (it runs on the same ports as `make up`).
#
#   scripts/measure-first-start.sh [FOLDER]      (default: /var/tmp/notify-first-start)
set -euo pipefail
# Read whole before it runs (bash reads a script as it goes): editing it cannot derail a run.
{

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

mount_all() {
  local m
  for m in "${mounts[@]}"; do mount --bind "/$m" "$ROOT/$m"; done
}
# A network that inspects TLS has its own authority: the host's local ones go along.
copy_host_setup() {
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  fi
}

[ -e "$ROOT" ] && remove_root
# The bare system (debootstrap, then make, git and ca-certificates) is made once and kept as
# $BASE: each run starts from a copy of it. Remove $BASE to debootstrap afresh.
BASE=$ROOT.base.tar
if [ ! -s "$BASE" ]; then
  echo "debootstrap bookworm into $ROOT (kept as $BASE for the next runs)"
  debootstrap bookworm "$ROOT" http://deb.debian.org/debian >"$ROOT.debootstrap.log" 2>&1
  trap stop_stack EXIT
  mount_all
  copy_host_setup
  in_root bash -c 'apt-get update -q && apt-get install -y -q --no-install-recommends make git \
    ca-certificates && update-ca-certificates' >"$ROOT.prepare.log" 2>&1
  unmount_all
  if grep -q " $ROOT/" /proc/mounts; then
    echo "measure-first-start: $ROOT still has mounts; not archived" >&2
    exit 1
  fi
  tar -C "$ROOT" --numeric-owner -cf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
else
  echo "a bare bookworm from $BASE into $ROOT"
  mkdir "$ROOT"
  tar -C "$ROOT" --numeric-owner -xpf "$BASE"
fi
trap stop_stack EXIT
mount_all
copy_host_setup
git clone -q "$SOURCE" "$ROOT/root/notify"

echo "time make up (log: $ROOT/root/up.log; load before: $(cut -d' ' -f1-3 /proc/loadavg))"
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
  python3 - "$start" "$up" "$emitted" "$done_at" "$inbox" <<EOF
import os, re, sys, time
start, up, emitted, done, inbox = map(float, sys.argv[1:])
print(f"make up: {up - start:.0f} s; make emit N=3: {emitted - up:.1f} s; "
      f"{int(inbox)} mails in the inbox {done - emitted:.2f} s after the emit")

def mtime(path):
    return os.stat(path).st_mtime if os.path.exists(path) else None

# What ran when, from the history of apt and the files each step leaves (to the second).
spans = []
with open("/var/log/apt/history.log") as f:
    for entry in f.read().split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", entry, re.M))
        if "Start-Date" not in fields or "End-Date" not in fields:
            continue
        s, e = (time.mktime(time.strptime(fields[k], "%Y-%m-%d  %H:%M:%S"))
                for k in ("Start-Date", "End-Date"))
        if s < start - 1:
            continue
        asked = [w for w in fields.get("Commandline", "").split()[2:] if not w.startswith("-")]
        count = len(re.findall(r"\), ", fields.get("Install", "") + ", "))
        names = " ".join(asked[:4]) + (" ..." if len(asked) > 4 else "")
        spans.append((s, e, f"apt-get install, {count} packages: {names}"))
cache, built = mtime("build/CMakeCache.txt"), mtime("build/build.log")
if cache and built:
    spans.append((cache, built, "the build of the stack programs (from the first configure)"))
npm = mtime("node_modules/.package-lock.json")
if npm:
    spans.append((npm, npm, "npm ci finished"))
background = mtime("build/run-deps.log")
if background:
    spans.append((background, background, "the background installs (apt, npm ci) finished"))
supervisord, ready = mtime("run/supervisord.pid"), mtime("run/stack.env")
if supervisord and ready:
    spans.append((supervisord, ready, "the stack: supervisord started, until all is ready"))
for s, e, what in sorted(spans):
    print(f"  {s - start:4.0f} - {e - start:4.0f} s  {what}")
EOF
  grep -h -E "^Need to get|^Fetched .* MB|^added .* packages" /root/up.log build/run-deps.log || true
'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
exit
}
