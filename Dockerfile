# Multi-stage build of the pipeline's binaries on Debian 12, the same packages as the native
# build (scripts/install-deps.sh).
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev librabbitmq-dev libcurl4-openssl-dev uuid-dev \
      nlohmann-json3-dev doctest-dev libkainjow-mustache-dev \
      libhowardhinnant-date-dev libcpp-httplib-dev prometheus-cpp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY notify_core notify_core
COPY auth_client auth_client
COPY etl_notifications etl_notifications
COPY worker_notifications worker_notifications
COPY dev dev
COPY tests tests
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j"$(nproc)" --target etl_notifications worker_notifications \
      dev_auth_server notify_emit

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 librabbitmq4 libcurl4 libuuid1 libdate-tz3 libprometheus-cpp-core1.0 \
      libcpp-httplib0.11 tzdata ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app notify
WORKDIR /app
COPY --from=build /src/build/bin/ /app/bin/
COPY templates /app/templates
COPY dev/users.json /app/dev/users.json
ENV TEMPLATES_DIR=/app/templates
USER notify
CMD ["/app/bin/etl_notifications"]
