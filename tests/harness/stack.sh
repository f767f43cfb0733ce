#!/usr/bin/env bash
# The broker stack of one test run (the CTest fixture stack_up / stack_down): the same code as
# `make up`, in test mode (free ports, a unique RabbitMQ node, fresh data). See dev/stack/stack.sh.
#   stack.sh start DIR BIN_DIR | stop DIR | ctl DIR ACTION PROGRAM | status DIR
set -euo pipefail
impl="$(dirname "${BASH_SOURCE[0]}")/../../dev/stack/stack.sh"
if [ "${1:-}" = start ]; then
  [ $# -eq 3 ] || { echo "usage: stack.sh start DIR BIN_DIR" >&2; exit 2; }
  exec "$impl" start "$2" "$3" test
fi
exec "$impl" "$@"
