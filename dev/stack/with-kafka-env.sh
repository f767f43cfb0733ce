#!/bin/sh
# with-kafka-env.sh BOOTSTRAP_FILE COMMAND [ARGS...]
# Waits for the development Kafka broker to write its address, then runs COMMAND with
# KAFKA_BOOTSTRAP_SERVERS set to it. The broker picks its port when it starts, so the address is
# read anew each time supervisord (re)starts a service.
set -eu
file=$1
shift
tries=0
while [ ! -s "$file" ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 600 ]; then
    echo "with-kafka-env: $file did not appear within 60 s" >&2
    exit 1
  fi
  sleep 0.1
done
KAFKA_BOOTSTRAP_SERVERS=$(cat "$file")
export KAFKA_BOOTSTRAP_SERVERS
exec "$@"
