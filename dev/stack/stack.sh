#!/usr/bin/env bash
# The broker stack of the notification pipeline, run natively under a private supervisord:
# RabbitMQ, the development Kafka broker, Redis (the workers' delivery ledger, append-only file),
# maildev (SMTP + web inbox) and the development Auth service. Two modes share this code:
#   test  free ports, a unique RabbitMQ node, fresh data each start (tests/harness/stack.sh,
#         the CTest fixture; several may run at once)
#   dev   the fixed ports of `make up`, RabbitMQ's management UI, data kept across starts, the
#         two services etl_notifications and worker_notifications, and Prometheus scraping them
# Stacks never touch each other: each has its own folder, ports, node name and supervisord, and
# its processes carry NOTIFY_STACK_DIR=<its folder> in their environment.
#
# Usage:
#   stack.sh start DIR BIN_DIR [test|dev]   start the stack in DIR, wait until it is ready, write
#                                           DIR/stack.env; a test stack is restarted, a dev stack
#                                           that runs and is ready is left as it is
#   stack.sh restart DIR BIN_DIR [test|dev] stop the stack in DIR if it runs, then start it
#   stack.sh stop DIR                       stop it and make sure none of its processes is left
#   stack.sh ctl DIR ACTION PROGRAM         supervisorctl ACTION PROGRAM; after start/restart of
#                                           rabbitmq, kafka or redis, waits until it answers again
#                                           (Kafka on a new port: stack.env is updated)
#   stack.sh status DIR                     what the stack is doing (status.py; exit 3: no stack
#                                           running); without status.py: supervisorctl status
#                                           and whether Redis answers PING
set -euo pipefail

STACK_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_DIR=$(cd "$STACK_SRC/../.." && pwd)
PROBE=$STACK_SRC/probe.py
READY_TIMEOUT=${NOTIFY_STACK_READY_TIMEOUT:-120}

log() { echo "stack: $*" >&2; }
die() {
  log "$*"
  exit 1
}

abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# A Unix socket path is limited to 107 bytes: a deep stack folder keeps its socket in /tmp,
# under a name derived from the folder so that stop and ctl find it again.
socket_path() {
  local dir=$1
  if [ ${#dir} -le 80 ]; then
    echo "$dir/supervisor.sock"
  else
    echo "${TMPDIR:-/tmp}/notify-stack-$(echo -n "$dir" | md5sum | cut -c1-16).sock"
  fi
}

ctl_cmd() { supervisorctl -c "$1/supervisord.conf" "${@:2}"; }

supervisord_pid() {
  local pidfile=$1/supervisord.pid
  [ -s "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  # A pid file left from a previous boot may name an unrelated process now.
  tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "NOTIFY_STACK_DIR=$1" || return 1
  echo "$pid"
}

stack_pids() { python3 "$PROBE" pids "$1"; }

wait_gone() { # wait_gone SECONDS PID...
  local deadline=$((SECONDS + $1))
  shift
  while [ $SECONDS -lt $deadline ]; do
    local alive=0
    for p in "$@"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
    [ $alive -eq 0 ] && return 0
    sleep 0.2
  done
  return 1
}

print_logs() {
  local dir=$1 f
  for f in "$dir"/logs/*.log "$dir"/rabbitmq/log/*.log; do
    [ -s "$f" ] || continue
    echo "----- ${f#"$dir"/} (last 40 lines) -----" >&2
    tail -n 40 "$f" >&2
  done
}

cmd_stop() {
  local dir
  [ -d "$1" ] || return 0
  dir=$(abs_dir "$1")
  local pid
  if pid=$(supervisord_pid "$dir"); then
    log "stopping the stack in $dir"
    # Graceful first: supervisord stops every program (RabbitMQ may take a few seconds).
    ctl_cmd "$dir" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone 90 "$pid"; then
      log "supervisord did not stop in time: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Whatever is left (an orphaned Erlang VM, a crashed supervisord's children) goes now.
  local left
  mapfile -t left < <(stack_pids "$dir")
  if [ ${#left[@]} -gt 0 ]; then
    log "ending leftover processes: ${left[*]}"
    kill -TERM "${left[@]}" 2>/dev/null || true
    if ! wait_gone 15 "${left[@]}"; then
      kill -KILL "${left[@]}" 2>/dev/null || true
      wait_gone 5 "${left[@]}" || true
    fi
  fi
  rm -f "$dir/stack.env" "$dir/supervisord.pid" "$(socket_path "$dir")"
}

# All checks that must pass before the stack counts as ready; prints what is still missing.
not_ready() {
  local dir=$1
  python3 "$PROBE" tcp "$AMQP_PORT" || {
    echo "RabbitMQ (port $AMQP_PORT)"
    return 0
  }
  python3 "$PROBE" redis "$REDIS_PORT" || {
    echo "Redis (port $REDIS_PORT)"
    return 0
  }
  if [ "$MODE" = dev ]; then
    python3 "$PROBE" http "http://127.0.0.1:$MANAGEMENT_PORT/" || {
      echo "RabbitMQ management (port $MANAGEMENT_PORT)"
      return 0
    }
  fi
  kafka_listening "$dir" || {
    echo "Kafka (bootstrap file $dir/kafka.bootstrap)"
    return 0
  }
  python3 "$PROBE" http "http://127.0.0.1:$WEB_PORT/email" || {
    echo "maildev (web port $WEB_PORT)"
    return 0
  }
  python3 "$PROBE" tcp "$AUTH_PORT" || {
    echo "Auth (port $AUTH_PORT)"
    return 0
  }
  if [ "$MODE" = dev ]; then
    python3 "$PROBE" http "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" || {
      echo "Prometheus (port $PROMETHEUS_PORT)"
      return 0
    }
  fi
  return 1
}

# Programs that gave up (FATAL) or ended (EXITED) will not become ready: fail early.
failed_programs() {
  ctl_cmd "$1" status 2>/dev/null | awk '$2 == "FATAL" || $2 == "EXITED" { print $1 }' || true
}

wait_ready() {
  local dir=$1 deadline=$((SECONDS + READY_TIMEOUT)) missing failed
  while true; do
    missing=$(not_ready "$dir") || return 0
    failed=$(failed_programs "$dir")
    if [ -n "$failed" ]; then
      log "program(s) stopped while starting: $(echo "$failed" | tr '\n' ' ')"
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "not ready after ${READY_TIMEOUT} s: $missing"
      return 1
    fi
    sleep 0.5
  done
}

prepare_rabbitmq() {
  local dir=$1 rdir=$1/rabbitmq
  # A test stack starts from nothing; the dev stack keeps its queues across `make up`.
  if [ "$MODE" = test ]; then rm -rf "$rdir"; fi
  mkdir -p "$rdir/mnesia" "$rdir/log" "$rdir/home"
  : >"$rdir/rabbitmq-env.conf" # keeps the machine's /etc/rabbitmq/rabbitmq-env.conf out
  {
    echo "# Written by stack.sh."
    echo "log.console = false" # the file log has it all; stdout keeps the boot banner
    echo "log.file.level = info"
  } >"$rdir/rabbitmq.conf"
  if [ "$MODE" = dev ]; then
    echo "[rabbitmq_management]." >"$rdir/enabled_plugins"
    {
      echo "management.tcp.ip = 127.0.0.1"
      echo "management.tcp.port = $MANAGEMENT_PORT"
    } >>"$rdir/rabbitmq.conf"
  else
    echo "[]." >"$rdir/enabled_plugins"
  fi

  export RABBITMQ_USER_LINE="" RABBITMQ_HOME_DIR=$rdir/home
  if [ "$(id -u)" -eq 0 ] && id -u rabbitmq >/dev/null 2>&1; then
    # As root, the Erlang VM runs as rabbitmq, as Debian sets it up (its cookie is in
    # /var/lib/rabbitmq, so `rabbitmqctl -n NODE` works) — if that user can reach the folder.
    chown -R rabbitmq:rabbitmq "$rdir"
    if runuser -u rabbitmq -- test -w "$rdir/mnesia" 2>/dev/null; then
      RABBITMQ_USER_LINE="user=rabbitmq" RABBITMQ_HOME_DIR=/var/lib/rabbitmq
    else
      log "user rabbitmq cannot reach $rdir (a parent folder is not o+x): RabbitMQ runs as root"
      chown -R root:root "$rdir"
    fi
  fi
}

prepare_redis() {
  local dir=$1 rdir=$1/redis
  # The append-only file of the dev stack survives `make down` / `make up`, like RabbitMQ's queues.
  if [ "$MODE" = test ]; then rm -rf "$rdir"; fi
  mkdir -p "$rdir"
  python3 "$PROBE" render "$STACK_SRC/redis.conf.in" >"$rdir/redis.conf"
}

check_port_free() {
  if python3 "$PROBE" tcp "$1"; then
    local hint="is another stack or a system service running?"
    case "$1" in
      5672 | 25672 | 15672)
        hint="is Debian's own RabbitMQ running? (sudo systemctl disable --now rabbitmq-server)"
        ;;
      6379)
        hint="is Debian's own Redis running? (sudo systemctl disable --now redis-server)"
        ;;
    esac
    die "port $1 ($2) is already in use: $hint"
  fi
}

dev_ports() {
  AMQP_PORT=5672 DIST_PORT=25672 MANAGEMENT_PORT=15672 SMTP_PORT=1025 WEB_PORT=8025
  AUTH_PORT=8081 PROMETHEUS_PORT=9090 ETL_METRICS_PORT=9464 WORKER_METRICS_PORT=9465
  REDIS_PORT=6379
}

# A dev stack whose supervisord runs, every program RUNNING and every broker answering (the
# checks of a start): starting it again would only lose a few seconds and the services' state.
running_and_ready() {
  local dir=$1 states
  supervisord_pid "$dir" >/dev/null || return 1
  [ -s "$dir/stack.env" ] && grep -qx "MODE=dev" "$dir/stack.state" 2>/dev/null || return 1
  states=$(ctl_cmd "$dir" status 2>/dev/null) || return 1
  [ -n "$states" ] || return 1
  if echo "$states" | awk '$2 != "RUNNING" { bad = 1 } END { exit !bad }'; then
    log "the stack in $dir runs in part: $(echo "$states" | awk '$2 != "RUNNING" { printf "%s %s; ", $1, $2 }')restarting it"
    return 1
  fi
  local missing
  if missing=$(not_ready "$dir"); then
    log "the stack in $dir runs, but $missing does not answer: restarting it"
    return 1
  fi
}

# Programs built after the stack started still run their old build.
warn_if_rebuilt() {
  local dir=$1 bin_dir=$2 p newer=()
  for p in dev_kafka_broker dev_auth_server etl_notifications worker_notifications; do
    [ "$bin_dir/$p" -nt "$dir/supervisord.pid" ] && newer+=("$p")
  done
  if [ ${#newer[@]} -gt 0 ]; then
    log "built since the stack started: ${newer[*]} (make restart runs the new build)"
  fi
}

cmd_start() {
  local dir bin_dir
  dir=$(abs_dir "$1")
  bin_dir=$(abs_dir "$2")
  MODE=${3:-test}
  case "$MODE" in test | dev) ;; *) die "unknown mode $MODE (test or dev)" ;; esac

  if [ "$MODE" = dev ] && [ "${RESTART:-0}" != 1 ]; then
    dev_ports
    if running_and_ready "$dir"; then
      log "the development stack in $dir is already up and ready: nothing changed" \
        "(make restart restarts it)"
      warn_if_rebuilt "$dir" "$bin_dir"
      return 0
    fi
  fi
  cmd_stop "$dir"
  "$SOURCE_DIR/scripts/node-deps.sh" >&2
  [ -x /usr/bin/redis-server ] || die "/usr/bin/redis-server is missing: scripts/install-deps.sh"
  local programs=(dev_kafka_broker dev_auth_server)
  if [ "$MODE" = dev ]; then programs+=(etl_notifications worker_notifications); fi
  for p in "${programs[@]}"; do
    [ -x "$bin_dir/$p" ] || die "$bin_dir/$p is missing: build it first"
  done

  if [ "$MODE" = dev ]; then
    dev_ports
    [ -x /usr/bin/prometheus ] || die "/usr/bin/prometheus is missing: scripts/install-deps.sh"
    for p in "$AMQP_PORT:AMQP" "$DIST_PORT:Erlang distribution" "$MANAGEMENT_PORT:management" \
      "$SMTP_PORT:SMTP" "$WEB_PORT:inbox" "$AUTH_PORT:Auth" "$PROMETHEUS_PORT:Prometheus" \
      "$ETL_METRICS_PORT:ETL metrics" "$WORKER_METRICS_PORT:worker metrics" "$REDIS_PORT:Redis"; do
      check_port_free "${p%%:*}" "${p#*:}"
    done
    RABBITMQ_NODENAME=notify_dev@localhost
    AUTORESTART=true
    # Topics and the consumer groups' offsets are kept in kafka/ across starts.
    KAFKA_DATA_ARGS="--data-dir $dir/kafka --groups etl_notifications"
  else
    local ports
    mapfile -t ports < <(python3 "$PROBE" free-ports 6)
    AMQP_PORT=${ports[0]} DIST_PORT=${ports[1]} SMTP_PORT=${ports[2]} WEB_PORT=${ports[3]}
    AUTH_PORT=${ports[4]} REDIS_PORT=${ports[5]}
    MANAGEMENT_PORT= PROMETHEUS_PORT= ETL_METRICS_PORT= WORKER_METRICS_PORT=
    RABBITMQ_NODENAME=notify_test_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')@localhost
    AUTORESTART=false # a crash in a test run should show, not be papered over
    KAFKA_DATA_ARGS=   # empty topics each start
  fi

  # One-click unsubscribe (documentation/unsubscribe.md): the development Auth service serves
  # the endpoint and verifies the tokens the ETL signs, with the same secret. The dev stack's
  # secret is fixed, so the links of mails in its inbox keep working across restarts; a test
  # stack gets a fresh one.
  if [ "$MODE" = dev ]; then
    UNSUBSCRIBE_SECRET=notify-development-unsubscribe-secret
  else
    UNSUBSCRIBE_SECRET=test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  fi
  UNSUBSCRIBE_URL=http://127.0.0.1:$AUTH_PORT/unsubscribe

  mkdir -p "$dir/logs"
  rm -f "$dir/kafka.bootstrap" "$dir/stack.env"
  if [ "$MODE" = test ]; then rm -f "$dir"/logs/*.log; fi # the dev stack keeps its history
  if [ "$MODE" = test ]; then rm -rf "$dir/maildev" "$dir/test-logs"; fi
  mkdir -p "$dir/maildev"
  export STACK_DIR=$dir BIN_DIR=$bin_dir SOURCE_DIR SUPERVISOR_SOCKET AMQP_PORT DIST_PORT \
    SMTP_PORT WEB_PORT AUTH_PORT RABBITMQ_NODENAME AUTORESTART PROMETHEUS_PORT ETL_METRICS_PORT \
    WORKER_METRICS_PORT REDIS_PORT KAFKA_DATA_ARGS UNSUBSCRIBE_SECRET UNSUBSCRIBE_URL
  prepare_rabbitmq "$dir"
  prepare_redis "$dir"

  SUPERVISOR_SOCKET=$(socket_path "$dir")
  if [ "$MODE" = dev ]; then
    mkdir -p "$dir/prometheus/data"
    python3 "$PROBE" render "$STACK_SRC/prometheus.yml.in" >"$dir/prometheus/prometheus.yml"
  fi
  {
    python3 "$PROBE" render "$STACK_SRC/supervisord.conf.in"
    if [ "$MODE" = dev ]; then python3 "$PROBE" render "$STACK_SRC/services.conf.in"; fi
  } >"$dir/supervisord.conf"
  # What ctl needs later.
  {
    echo "MODE=$MODE"
    echo "AMQP_PORT=$AMQP_PORT"
    echo "REDIS_PORT=$REDIS_PORT"
  } >"$dir/stack.state"

  log "starting the $MODE stack in $dir (RabbitMQ node $RABBITMQ_NODENAME)"
  local started=$SECONDS
  # supervisord daemonizes; its stdio goes to /dev/null so that CTest does not wait on it.
  NOTIFY_STACK_DIR=$dir supervisord -c "$dir/supervisord.conf" </dev/null >/dev/null 2>&1 ||
    die "supervisord did not start: see $dir/logs/supervisord.log"

  if ! wait_ready "$dir"; then
    ctl_cmd "$dir" status >&2 || true
    print_logs "$dir"
    cmd_stop "$dir"
    exit 1
  fi
  log "brokers ready after $((SECONDS - started)) s"

  if [ "$MODE" = dev ]; then
    ctl_cmd "$dir" start etl worker >&2 || {
      print_logs "$dir"
      die "the services did not start (the stack stays up: make down to stop it)"
    }
  fi

  local env_file=$dir/stack.env
  cat >"$env_file.tmp" <<EOF
RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
KAFKA_BOOTSTRAP_SERVERS=$(cat "$dir/kafka.bootstrap")
SMTP_HOST=127.0.0.1
SMTP_PORT=$SMTP_PORT
INBOX_URL=http://127.0.0.1:$WEB_PORT
AUTH_URL=http://127.0.0.1:$AUTH_PORT
UNSUBSCRIBE_SECRET=$UNSUBSCRIBE_SECRET
UNSUBSCRIBE_URL=$UNSUBSCRIBE_URL
LEDGER_URL=redis://127.0.0.1:$REDIS_PORT/0
REDIS_PORT=$REDIS_PORT
STACK_DIR=$dir
BIN_DIR=$bin_dir
SOURCE_DIR=$SOURCE_DIR
EOF
  if [ "$MODE" = dev ]; then
    {
      echo "MANAGEMENT_URL=http://127.0.0.1:$MANAGEMENT_PORT"
      echo "PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT"
      echo "ETL_METRICS_URL=http://127.0.0.1:$ETL_METRICS_PORT/metrics"
      echo "WORKER_METRICS_URL=http://127.0.0.1:$WORKER_METRICS_PORT/metrics"
    } >>"$env_file.tmp"
  fi
  mv "$env_file.tmp" "$env_file"
}

running_stack() {
  local dir
  [ -d "$1" ] || die "no stack in $1"
  dir=$(abs_dir "$1")
  supervisord_pid "$dir" >/dev/null || die "no stack running in $dir"
  echo "$dir"
}

wait_for() { # wait_for DIR WHAT COMMAND...: until COMMAND succeeds, or fail with the logs
  local dir=$1 what=$2 deadline=$((SECONDS + READY_TIMEOUT))
  shift 2
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      print_logs "$dir"
      die "$what not ready within ${READY_TIMEOUT} s"
    fi
    sleep 0.2
  done
}

kafka_listening() {
  local kafka
  kafka=$(cat "$1/kafka.bootstrap" 2>/dev/null) && [ -n "$kafka" ] &&
    python3 "$PROBE" tcp "${kafka##*:}"
}

cmd_ctl() {
  local dir action=$2 program=$3
  dir=$(running_stack "$1")
  local starting=0
  case "$action" in start | restart) starting=1 ;; esac
  # The Kafka broker listens on a new port each start: the old address must not be mistaken
  # for the new one.
  if [ "$program" = kafka ] && [ $starting -eq 1 ]; then rm -f "$dir/kafka.bootstrap"; fi
  ctl_cmd "$dir" "$action" "$program"
  [ $starting -eq 1 ] || return 0
  if [ "$program" = rabbitmq ]; then
    local port
    port=$(sed -n 's/^AMQP_PORT=//p' "$dir/stack.state")
    wait_for "$dir" RabbitMQ python3 "$PROBE" tcp "$port"
  elif [ "$program" = redis ]; then
    local port
    port=$(sed -n 's/^REDIS_PORT=//p' "$dir/stack.state")
    wait_for "$dir" Redis python3 "$PROBE" redis "$port"
  elif [ "$program" = kafka ]; then
    wait_for "$dir" Kafka kafka_listening "$dir"
    sed -i "s/^KAFKA_BOOTSTRAP_SERVERS=.*/KAFKA_BOOTSTRAP_SERVERS=$(cat "$dir/kafka.bootstrap")/" \
      "$dir/stack.env"
    log "Kafka now at $(cat "$dir/kafka.bootstrap") (stack.env updated)"
  fi
}

# status.py (queues, lag, readiness, URLs) when it is there; otherwise supervisord's view and
# whether Redis answers.
cmd_status() {
  if [ -f "$STACK_SRC/status.py" ]; then
    local rc=0
    python3 "$STACK_SRC/status.py" "$1" || rc=$?
    exit $rc
  fi
  local dir rc=0 port
  dir=$(running_stack "$1")
  ctl_cmd "$dir" status || rc=$?
  port=$(sed -n 's/^REDIS_PORT=//p' "$dir/stack.state")
  if [ -z "$port" ]; then
    echo "Redis is not part of this stack (started by an older stack.sh): restart it"
    rc=1
  elif python3 "$PROBE" redis "$port"; then
    echo "Redis answers PING on 127.0.0.1:$port"
  else
    echo "Redis does not answer PING on 127.0.0.1:$port: the workers take no deliveries"
    [ $rc -ne 0 ] || rc=1
  fi
  return $rc
}

case "${1:-}" in
  start)
    [ $# -ge 3 ] && [ $# -le 4 ] || die "usage: stack.sh start DIR BIN_DIR [test|dev]"
    cmd_start "$2" "$3" "${4:-test}"
    ;;
  restart)
    [ $# -ge 3 ] && [ $# -le 4 ] || die "usage: stack.sh restart DIR BIN_DIR [test|dev]"
    RESTART=1 cmd_start "$2" "$3" "${4:-test}"
    ;;
  stop)
    [ $# -eq 2 ] || die "usage: stack.sh stop DIR"
    cmd_stop "$2"
    ;;
  ctl)
    [ $# -eq 4 ] || die "usage: stack.sh ctl DIR ACTION PROGRAM"
    cmd_ctl "$2" "$3" "$4"
    ;;
  status)
    [ $# -eq 2 ] || die "usage: stack.sh status DIR"
    cmd_status "$2"
    ;;
  *) die "usage: stack.sh start|restart|stop|ctl|status DIR ..." ;;
esac
