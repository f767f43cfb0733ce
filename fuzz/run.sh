#!/usr/bin/env bash
# Runs the libFuzzer targets built in a build folder (make fuzz): each for FUZZ_SECONDS, on a
# working corpus of its own in <build>/corpus/<target> seeded from fuzz/corpus and
# fuzz/regressions, with findings written to <build>/artifacts/<target>/. Prints executions and
# findings per target; exits 1 when any target found something.
#
#   fuzz/run.sh [build-dir]      FUZZ_SECONDS=300  FUZZ_TARGETS="event posting auth links"
set -uo pipefail

cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-300}
targets=${FUZZ_TARGETS:-event posting auth links}

# Inputs must be able to reach the limits: MAX_EVENT_BYTES is 900,000 by default; Auth answers
# and postings are bounded lower, nesting (64) is reached long before.
max_len() { if [ "$1" = event ]; then echo 1100000; else echo 300000; fi; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

summary=()
found=0
for t in $targets; do
  binary=$build/bin/fuzz_$t
  if [ ! -x "$binary" ]; then
    echo "fuzz: no $binary (make fuzz builds it)" >&2
    exit 2
  fi
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  log=$build/logs/$t.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  for seeds in fuzz/corpus/$t fuzz/regressions/$t; do
    [ -d "$seeds" ] && find "$seeds" -type f ! -name '.*' -exec cp -n {} "$corpus"/ \;
  done
  marker=$(mktemp)
  echo "fuzz_$t: ${seconds}s, log in $log"
  started=$(date +%s)
  "$binary" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=30 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" \
    >"$log" 2>&1
  rc=$?
  elapsed=$(($(date +%s) - started))
  executions=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -n 1)
  new=$(find "$artifacts" -type f -newer "$marker" | sort)
  rm -f "$marker"
  count=$(printf '%s' "$new" | grep -c . || true)
  line="fuzz_$t: ${executions:-?} executions in ${elapsed}s, $count finding(s)"
  if [ "$rc" -ne 0 ] || [ "$count" -gt 0 ]; then
    found=1
    line+=" (exit $rc)"
    for f in $new; do line+=$'\n'"    $f"; done
    grep -m 3 -E 'ERROR: |fuzz invariant broken|runtime error:' "$log" | sed 's/^/    /' >&2
  fi
  summary+=("$line")
done

echo
echo "Fuzzing summary"
printf '  %s\n' "${summary[@]}"
if [ "$found" -ne 0 ]; then
  echo "Findings: copy each reproducer into fuzz/regressions/<target>/ and fix its cause" \
    "(documentation/fuzzing.md)."
  exit 1
fi
