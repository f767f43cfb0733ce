# Multi-stage build of the pipeline's binaries on Debian 12. The build stage installs the same
# -dev packages as the native build (scripts/install-deps.sh; tests/compose/check_compose.py
# keeps the two lists equal); the runtime stage only the shared libraries they link, and runs
# as a non-root user.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev librabbitmq-dev libcurl4-openssl-dev libssl-dev uuid-dev \
      nlohmann-json3-dev doctest-dev libkainjow-mustache-dev \
      libhowardhinnant-date-dev libcpp-httplib-dev prometheus-cpp-dev libbenchmark-dev libcli11-dev \
      libhiredis-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole source tree (.dockerignore keeps build trees and run data out): every folder the
# top-level CMakeLists.txt adds must be there.
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j"$(nproc)" --target etl_notifications worker_notifications \
      dev_auth_server notify_emit notify_replay notify_trace

FROM debian:bookworm-slim AS runtime
# Only what the binaries link (check_compose.py compares with ldd of a native build).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 librabbitmq4 libcurl4 libuuid1 libdate-tz3 libcpp-httplib0.11 \
      libprometheus-cpp-core1.0 libhiredis0.14 \
      tzdata ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app notify
WORKDIR /app
COPY --from=build /src/build/bin/etl_notifications /src/build/bin/worker_notifications \
     /src/build/bin/dev_auth_server /src/build/bin/notify_emit /src/build/bin/notify_replay \
     /src/build/bin/notify_trace \
     /app/bin/
COPY dev/docker/ready.sh /app/bin/ready
COPY templates /app/templates
COPY dev/users.json /app/dev/users.json
ENV TEMPLATES_DIR=/app/templates
USER notify
CMD ["/app/bin/etl_notifications"]
