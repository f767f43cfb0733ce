# Entry points for developers and CI. Everything runs natively on Debian 12: scripts/install-deps.sh
# installs the toolchain and the brokers (scripts/node-deps.sh maildev), dev/stack/stack.sh runs
# them under supervisord.
#
#   make test          all tests (unit, integration, end-to-end); starts its own broker stack
#   make unit-test     unit tests only, no brokers
#   make etl-test      the ETL's tests (unit + integration)
#   make worker-test   the worker's tests (unit + integration)
#   make up / down     the development stack with both services (make up on a running, ready
#                      stack changes nothing; make restart restarts it); make status; make emit N=5
#   make clean-data    stops the development stack and deletes its data (queues, topics, ledger,
#                      mail, metrics, logs): the next make up starts afresh
#   make replay-dlq    dead-lettered events of the development stack (dry run; APPLY=1 replays)
#   make replay-postings  dead postings (CHANNEL=email|webhook; dry run; APPLY=1 replays)
#   make trace EVENT=id | USER=id | POSTING=id   what happened to it on the development stack
#                      (ZONE=Europe/Berlin shows times there, JSON=1 prints the status events)
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

# Benchmarks are built by make bench (and make lint, which checks their code too), not by make
# build / test / up. Minimal debug information (-g1: backtraces and lines, no locals) takes a
# third off the compile time; make up and make test share build/ and so these flags.
CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNOTIFY_BENCH=OFF -DNOTIFY_LINE_DEBUG_INFO=ON
ifeq ($(CI),true)
CMAKE_FLAGS += -DNOTIFY_WERROR=ON
else
CMAKE_FLAGS += -DNOTIFY_WERROR=OFF
endif
JOBS := $(shell nproc 2>/dev/null || echo 2)
CTEST := ctest --test-dir $(BUILD_DIR) --output-on-failure

# Prerequisites run in the order written (deps before build); cmake parallelizes the build itself,
# with a job per core. cmake --build runs make below this make: without --no-print-directory
# every directory it enters is announced.
.NOTPARALLEL:
MAKEFLAGS += --no-print-directory

# $(call build_quietly,BUILD_DIR,TARGETS): configures (CMAKE_FLAGS, plus $(3)) and builds TARGETS
# (everything when empty) on every core. The compiler's output goes to BUILD_DIR/build.log and is
# shown only when the build fails; V=1 shows it as it comes (CI's logs always show it: a long
# silence there looks like a hang).
ifeq ($(CI),true)
V ?= 1
endif
ifeq ($(V),1)
build_quietly = cmake -S . -B $(1) $(CMAKE_FLAGS) $(3) && \
	cmake --build $(1) -j$(JOBS) $(if $(2),--target $(2))
else
build_quietly = @mkdir -p $(1) && \
	echo "building $(if $(2),$(2),everything) in $(1)/ on $(JOBS) cores (log: $(1)/build.log)" && \
	{ cmake -S . -B $(1) $(CMAKE_FLAGS) $(3) && \
	  cmake --build $(1) -j$(JOBS) $(if $(2),--target $(2)); } >$(1)/build.log 2>&1 || \
	{ tail -n 60 $(1)/build.log; echo "the build failed: the whole output is in $(1)/build.log" >&2; \
	  exit 1; }
endif

.PHONY: all deps deps-and-build-stack build build-stack test etl-test worker-test unit-test up down \
	restart status emit replay-dlq replay-postings trace format format-check lint clean clean-data bench fuzz banner

all: build

deps:
	scripts/install-deps.sh
	scripts/node-deps.sh

build:
	$(call build_quietly,$(BUILD_DIR),)

# Only what the development stack runs (the services, the development Kafka and Auth, notify_emit
# and notify_replay): no tests, no benchmarks.
build-stack:
	$(call build_quietly,$(BUILD_DIR),stack_programs)

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

restart:
	docker compose restart

down:
	docker compose down

clean-data:
	docker compose down --volumes
else
# A running stack that is ready is left as it is (stack.sh says so); make restart restarts it.
up: deps-and-build-stack
	@$(STACK) start $(RUN_DIR) $(BUILD_DIR)/bin dev
	@$(MAKE) banner

restart: deps-and-build-stack
	@$(STACK) restart $(RUN_DIR) $(BUILD_DIR)/bin dev
	@$(MAKE) banner

# What building needs first; then, while the stack's programs compile, what only running needs
# (the brokers, supervisor, Prometheus, node) and npm ci, in the background and at a lower
# priority than the build, which is what the start waits for: on a first start that hides most
# of the packages' time behind the build. Its output goes to BUILD_DIR/run-deps.log, shown when
# it fails; a failed build waits for it before failing.
# Without root, sudo asks for its password before anything runs in the background.
deps-and-build-stack:
	@scripts/install-deps.sh --build
	@if [ "$$(id -u)" -ne 0 ] && [ -n "$$(scripts/install-deps.sh --missing --run)" ]; then \
	  sudo -v; fi
	@mkdir -p $(BUILD_DIR) && \
	{ nice -n 10 scripts/install-deps.sh --run && nice -n 10 scripts/node-deps.sh; } \
	  </dev/null >$(BUILD_DIR)/run-deps.log 2>&1 & \
	run_deps=$$!; \
	built=0; $(MAKE) build-stack || built=$$?; \
	if ! wait $$run_deps; then \
	  tail -n 40 $(BUILD_DIR)/run-deps.log; \
	  echo "installing what the stack runs failed: the whole output is in $(BUILD_DIR)/run-deps.log" >&2; \
	  exit 1; \
	fi; \
	exit $$built

# Prometheus 2.42 as Debian packages it has no new UI: its pages are under /classic/.
banner:
	@set -a && . $(RUN_DIR)/stack.env && set +a && \
	echo && \
	echo "The development stack is up." && \
	echo "  Inbox (maildev)       $$INBOX_URL" && \
	echo "  RabbitMQ management   $$MANAGEMENT_URL  (guest / guest)" && \
	echo "  RabbitMQ              $$RABBITMQ_URL" && \
	echo "  Kafka bootstrap       $$KAFKA_BOOTSTRAP_SERVERS" && \
	echo "  Auth                  $$AUTH_URL" && \
	echo "  Prometheus            $$PROMETHEUS_URL/classic/graph  (targets: $$PROMETHEUS_URL/classic/targets)" && \
	echo "  ETL metrics           $$ETL_METRICS_URL  (/healthz, /readyz)" && \
	echo "  Worker metrics        $$WORKER_METRICS_URL  (/healthz, /readyz)" && \
	echo "  SMTP                  $$SMTP_HOST:$$SMTP_PORT" && \
	echo "  Redis (ledger)        $$LEDGER_URL" && \
	echo "  Emit events           make emit N=5" && \
	echo "  Dead letters          make replay-dlq / make replay-postings" && \
	echo "  What happened to it   make trace EVENT=id | USER=id | POSTING=id" && \
	echo "  Logs                  $(RUN_DIR)/logs/" && \
	echo "  Status / stop         make status / make down  (make restart, make clean-data)"

down:
	$(STACK) stop $(RUN_DIR)

# Queues, topics and committed offsets, the ledger, mail, metrics and logs all go.
clean-data:
	$(STACK) stop $(RUN_DIR)
	rm -rf $(RUN_DIR)
endif

# Exit status 3 when no stack runs (stack.sh status, 4 when in part up); make itself turns a failed
# recipe into 2, after its own line.
status:
	@$(STACK) status $(RUN_DIR)

emit:
	@test -s $(RUN_DIR)/kafka.bootstrap || { echo "the development stack is not up: make up" >&2; exit 1; }
	$(BUILD_DIR)/bin/notify_emit --bootstrap "$$(cat $(RUN_DIR)/kafka.bootstrap)" --count $(N) --users dev/users.json

# Dead letters of the development stack: a dry run lists them; APPLY=1 sends them back.
REPLAY_FLAGS = $(if $(APPLY),,--dry-run) $(if $(MATCH),--match "$(MATCH)")
replay-dlq:
	@test -s $(RUN_DIR)/stack.env || { echo "the development stack is not up: make up" >&2; exit 1; }
	$(call build_quietly,$(BUILD_DIR),notify_replay)
	$(BUILD_DIR)/bin/notify_replay events --bootstrap "$$(cat $(RUN_DIR)/kafka.bootstrap)" $(REPLAY_FLAGS)
	@$(if $(APPLY),true,echo && echo "Dry run: nothing was replayed. To replay: make replay-dlq APPLY=1 [MATCH=text]")

replay-postings:
	@test -s $(RUN_DIR)/stack.env || { echo "the development stack is not up: make up" >&2; exit 1; }
	$(call build_quietly,$(BUILD_DIR),notify_replay)
	@set -a && . $(RUN_DIR)/stack.env && set +a && \
	$(BUILD_DIR)/bin/notify_replay postings --rabbitmq-url "$$RABBITMQ_URL" --channel $(CHANNEL) $(REPLAY_FLAGS)
	@$(if $(APPLY),true,echo && echo "Dry run: nothing was replayed. To replay: make replay-postings APPLY=1 [CHANNEL=webhook] [MATCH=text]")

# The story of an event, a user or a posting on the development stack, from the status topic and
# the ETL's dead-letter topic (documentation/operations.md, "make trace"). USER is also the login
# name in the environment: only one given on the command line selects.
TRACE_USER = $(if $(filter command line,$(origin USER)),$(USER))
TRACE_FLAGS = $(if $(EVENT),--event "$(EVENT)") $(if $(TRACE_USER),--user "$(TRACE_USER)") \
	$(if $(POSTING),--posting "$(POSTING)") $(if $(ZONE),--zone "$(ZONE)") $(if $(JSON),--json)
trace:
	@test -s $(RUN_DIR)/stack.env || { echo "the development stack is not up: make up" >&2; exit 1; }
	@test -n "$(EVENT)$(TRACE_USER)$(POSTING)" || \
	  { echo "usage: make trace EVENT=id | USER=id | POSTING=id [ZONE=Europe/Berlin] [JSON=1]" >&2; exit 2; }
	$(call build_quietly,$(BUILD_DIR),notify_trace)
	@$(BUILD_DIR)/bin/notify_trace --bootstrap "$$(cat $(RUN_DIR)/kafka.bootstrap)" $(TRACE_FLAGS)

# Benchmarks (not part of `make test`): a Release build of its own in build-bench/, its own broker
# stack, each service against a bare relay of its own in the same run, and the results in
# documentation/benchmarks.md (bench/run.py; valgrind counts the ETL's instructions per event).
bench: deps
	scripts/install-deps.sh valgrind
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNOTIFY_BENCH=ON
	cmake --build build-bench --target bench_programs -j$(JOBS)
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
	cmake --build build-fuzz --target $(addprefix fuzz_,$(FUZZ_TARGETS)) -j$(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" fuzz/run.sh build-fuzz

# Chaos (not part of `make test`, not run by CI): the services killed and restarted, the brokers
# restarted or unreachable while sign-ups flow, on a stack of its own in $(BUILD_DIR)/chaos-stack;
# counts lost, duplicated and expired mail and writes documentation/reliability.md. N and RUNS
# override the 10,000 sign-ups and the three runs; LEDGER=none runs the worker without its ledger.
RUNS ?= 3
LEDGER ?= auto
.PHONY: chaos
chaos: deps
	$(call build_quietly,$(BUILD_DIR),etl_notifications worker_notifications dev_auth_server \
	  dev_kafka_broker)
	python3 tests/chaos/chaos.py --build-dir $(BUILD_DIR) --runs $(RUNS) --ledger $(LEDGER) \
	  $(if $(filter command line environment,$(origin N)),--n $(N))

format:
	@command -v clang-format >/dev/null || scripts/install-deps.sh clang-format
	git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format -i

# clang-tidy with the committed .clang-tidy over every translation unit of the build
# (compile_commands.json of build-lint), the benchmarks' included; any finding fails it. CI runs it.
lint: deps
	$(call build_quietly,$(BUILD_DIR),,-DNOTIFY_BENCH=ON)
	@command -v run-clang-tidy >/dev/null || scripts/install-deps.sh clang-tidy
	@# clang-tidy reads the files one by one: a configuration of its own without batches of files.
	cmake -S . -B build-lint $(CMAKE_FLAGS) -DNOTIFY_BENCH=ON -DNOTIFY_UNITY=OFF >/dev/null
	run-clang-tidy -quiet -p build-lint -j $(JOBS) \
	  '$(CURDIR)/(notify_core|auth_client|etl_notifications|worker_notifications|dev|tests|fuzz|bench)/.*\.cpp$$'

# Fails, naming the file and line, when a tracked C++ file differs from .clang-format (CI runs it).
format-check:
	@command -v clang-format >/dev/null || scripts/install-deps.sh clang-format
	git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format --dry-run --Werror

clean:
	@# A test stack left running would lose its folder under it.
	-$(STACK) stop $(BUILD_DIR)/test-stack
	rm -rf $(BUILD_DIR) build-lint
