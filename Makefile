# Entry points for developers and CI. Everything runs natively on Debian 12: scripts/install-deps.sh
# installs the toolchain and the brokers, dev/stack/stack.sh runs them under supervisord.
#
#   make test          all tests (unit, integration, end-to-end); starts its own broker stack
#   make unit-test     unit tests only, no brokers
#   make etl-test      the ETL's tests (unit + integration)
#   make worker-test   the worker's tests (unit + integration)
#   make up / down     the development stack with both services; make status; make emit N=5
#   make replay-dlq    dead-lettered events of the development stack (dry run; APPLY=1 replays)
#   make replay-postings  dead postings (CHANNEL=email|webhook; dry run; APPLY=1 replays)
#   make format        clang-format on the tracked C++ files (make format-check: CI's check)
#   make lint          clang-tidy (.clang-tidy) over the build's translation units
#   make fuzz          libFuzzer targets (clang) for FUZZ_SECONDS each (not part of make test)
#   make chaos         the pipeline under kills and outages, RUNS=3 runs of N=10000 sign-ups
#                      (not part of make test); writes documentation/reliability.md

SHELL := /bin/bash
BUILD_DIR := build
RUN_DIR := run
STACK := dev/stack/stack.sh
N ?= 1
APPLY ?=
MATCH ?=
CHANNEL ?= email

CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo
ifeq ($(CI),true)
CMAKE_FLAGS += -DNOTIFY_WERROR=ON
else
CMAKE_FLAGS += -DNOTIFY_WERROR=OFF
endif
JOBS := $(shell nproc 2>/dev/null || echo 2)
CTEST := ctest --test-dir $(BUILD_DIR) --output-on-failure

# Prerequisites run in the order written (deps before build); cmake parallelizes the build itself.
.NOTPARALLEL:
.PHONY: all deps build test etl-test worker-test unit-test up down status emit replay-dlq \
	replay-postings format format-check lint clean bench fuzz

all: build

deps:
	scripts/install-deps.sh
	scripts/node-deps.sh

build:
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j2

test: deps build
	$(CTEST)

etl-test: deps build
	$(CTEST) -L etl

worker-test: deps build
	$(CTEST) -L worker

unit-test: deps build
	$(CTEST) -L unit

# With a Docker engine answering (and NATIVE unset), `make up` runs docker-compose.yml;
# otherwise the same stack natively under supervisord.
DOCKER := $(shell [ -z "$(NATIVE)" ] && docker info >/dev/null 2>&1 && echo yes)

ifeq ($(DOCKER),yes)
up:
	docker compose up -d --build
	@echo
	@echo "The stack is up (Docker Compose)."
	@echo "  Inbox (MailHog)       http://127.0.0.1:8025"
	@echo "  RabbitMQ management   http://127.0.0.1:15672  (notify / notify)"
	@echo "  Kafka bootstrap       127.0.0.1:9092"
	@echo "  Auth                  http://127.0.0.1:8081"
	@echo "  Prometheus            http://127.0.0.1:9090"
	@echo "  Redis (ledger)        127.0.0.1:6379"
	@echo "  Status / stop         docker compose ps / make down"

down:
	docker compose down
else
up: deps build
	$(STACK) start $(RUN_DIR) $(BUILD_DIR)/bin dev
	@set -a && . $(RUN_DIR)/stack.env && set +a && \
	echo && \
	echo "The development stack is up." && \
	echo "  Inbox (maildev)       $$INBOX_URL" && \
	echo "  RabbitMQ management   $$MANAGEMENT_URL  (guest / guest)" && \
	echo "  RabbitMQ              $$RABBITMQ_URL" && \
	echo "  Kafka bootstrap       $$KAFKA_BOOTSTRAP_SERVERS" && \
	echo "  Auth                  $$AUTH_URL" && \
	echo "  Prometheus            $$PROMETHEUS_URL" && \
	echo "  SMTP                  $$SMTP_HOST:$$SMTP_PORT" && \
	echo "  Redis (ledger)        $$LEDGER_URL" && \
	echo "  Emit events           make emit N=5" && \
	echo "  Dead letters          make replay-dlq / make replay-postings" && \
	echo "  Logs                  $(RUN_DIR)/logs/" && \
	echo "  Status / stop         make status / make down"

down:
	$(STACK) stop $(RUN_DIR)
endif

status:
	$(STACK) status $(RUN_DIR)

emit:
	@test -s $(RUN_DIR)/kafka.bootstrap || { echo "the development stack is not up: make up" >&2; exit 1; }
	$(BUILD_DIR)/bin/notify_emit --bootstrap "$$(cat $(RUN_DIR)/kafka.bootstrap)" --count $(N) --users dev/users.json

# Dead letters of the development stack: a dry run lists them; APPLY=1 sends them back.
REPLAY_FLAGS = $(if $(APPLY),,--dry-run) $(if $(MATCH),--match "$(MATCH)")
replay-dlq:
	@test -s $(RUN_DIR)/stack.env || { echo "the development stack is not up: make up" >&2; exit 1; }
	@cmake --build $(BUILD_DIR) --target notify_replay -j2 >/dev/null 2>&1 || \
	  cmake --build $(BUILD_DIR) --target notify_replay -j2
	$(BUILD_DIR)/bin/notify_replay events --bootstrap "$$(cat $(RUN_DIR)/kafka.bootstrap)" $(REPLAY_FLAGS)
	@$(if $(APPLY),true,echo && echo "Dry run: nothing was replayed. To replay: make replay-dlq APPLY=1 [MATCH=text]")

replay-postings:
	@test -s $(RUN_DIR)/stack.env || { echo "the development stack is not up: make up" >&2; exit 1; }
	@cmake --build $(BUILD_DIR) --target notify_replay -j2 >/dev/null 2>&1 || \
	  cmake --build $(BUILD_DIR) --target notify_replay -j2
	@set -a && . $(RUN_DIR)/stack.env && set +a && \
	$(BUILD_DIR)/bin/notify_replay postings --rabbitmq-url "$$RABBITMQ_URL" --channel $(CHANNEL) $(REPLAY_FLAGS)
	@$(if $(APPLY),true,echo && echo "Dry run: nothing was replayed. To replay: make replay-postings APPLY=1 [CHANNEL=webhook] [MATCH=text]")

# Benchmarks (not part of `make test`): a Release build of its own in build-bench/, its own broker
# stack, each service against a bare relay of its own in the same run, and the results in
# documentation/benchmarks.md (bench/run.py; valgrind counts the ETL's instructions per event).
bench: deps
	scripts/install-deps.sh valgrind
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNOTIFY_BENCH=ON
	cmake --build build-bench --target bench_programs -j$$(nproc)
	python3 bench/run.py --build-dir build-bench --out documentation/benchmarks.md

# Fuzzing (not part of `make test`, which replays the seeds and reproducers): a clang build of
# its own in build-fuzz/, each target run for FUZZ_SECONDS; FUZZ_TARGETS picks some of
# "event posting auth links". See documentation/fuzzing.md.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= event posting auth links
fuzz:
	scripts/install-deps.sh clang libclang-rt-14-dev
	CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNOTIFY_FUZZ=ON \
	  -DNOTIFY_BENCH=OFF
	cmake --build build-fuzz --target $(addprefix fuzz_,$(FUZZ_TARGETS)) -j2
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" fuzz/run.sh build-fuzz

# Chaos (not part of `make test`, not run by CI): the services killed and restarted, the brokers
# restarted or unreachable while sign-ups flow, on a stack of its own in $(BUILD_DIR)/chaos-stack;
# counts lost, duplicated and expired mail and writes documentation/reliability.md. N and RUNS
# override the 10,000 sign-ups and the three runs; LEDGER=none runs the worker without its ledger.
RUNS ?= 3
LEDGER ?= auto
.PHONY: chaos
chaos: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j2 --target etl_notifications worker_notifications \
	  dev_auth_server dev_kafka_broker
	python3 tests/chaos/chaos.py --build-dir $(BUILD_DIR) --runs $(RUNS) --ledger $(LEDGER) \
	  $(if $(filter command line environment,$(origin N)),--n $(N))

format:
	@command -v clang-format >/dev/null || scripts/install-deps.sh clang-format
	git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format -i

# clang-tidy with the committed .clang-tidy over every translation unit of the build
# (compile_commands.json); any finding fails it. CI runs it.
lint: deps build
	@command -v run-clang-tidy >/dev/null || scripts/install-deps.sh clang-tidy
	run-clang-tidy -quiet -p $(BUILD_DIR) -j $(JOBS) \
	  '$(CURDIR)/(notify_core|auth_client|etl_notifications|worker_notifications|dev|tests|fuzz|bench)/.*\.cpp$$'

# Fails, naming the file and line, when a tracked C++ file differs from .clang-format (CI runs it).
format-check:
	@command -v clang-format >/dev/null || scripts/install-deps.sh clang-format
	git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format --dry-run --Werror

clean:
	@# A test stack left running would lose its folder under it.
	-$(STACK) stop $(BUILD_DIR)/test-stack
	rm -rf $(BUILD_DIR)
