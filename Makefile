# Entry points for developers and CI. Everything runs natively on Debian 12: scripts/install-deps.sh
# installs the toolchain and the brokers, dev/stack/stack.sh runs them under supervisord.
#
#   make test          all tests (unit, integration, end-to-end); starts its own broker stack
#   make unit-test     unit tests only, no brokers
#   make etl-test      the ETL's tests (unit + integration)
#   make worker-test   the worker's tests (unit + integration)
#   make up / down     the development stack with both services; make status; make emit N=5
#   make format        clang-format on the tracked C++ files

SHELL := /bin/bash
BUILD_DIR := build
RUN_DIR := run
STACK := dev/stack/stack.sh
N ?= 1

CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo
ifeq ($(CI),true)
CMAKE_FLAGS += -DNOTIFY_WERROR=ON
else
CMAKE_FLAGS += -DNOTIFY_WERROR=OFF
endif
CTEST := ctest --test-dir $(BUILD_DIR) --output-on-failure

# Prerequisites run in the order written (deps before build); cmake parallelizes the build itself.
.NOTPARALLEL:
.PHONY: all deps build test etl-test worker-test unit-test up down status emit format clean

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
	echo "  SMTP                  $$SMTP_HOST:$$SMTP_PORT" && \
	echo "  Emit events           make emit N=5" && \
	echo "  Logs                  $(RUN_DIR)/logs/" && \
	echo "  Status / stop         make status / make down"

down:
	$(STACK) stop $(RUN_DIR)

status:
	$(STACK) status $(RUN_DIR)

emit:
	@test -s $(RUN_DIR)/kafka.bootstrap || { echo "the development stack is not up: make up" >&2; exit 1; }
	$(BUILD_DIR)/bin/notify_emit --bootstrap "$$(cat $(RUN_DIR)/kafka.bootstrap)" --count $(N) --users dev/users.json

format:
	@command -v clang-format >/dev/null || scripts/install-deps.sh clang-format
	git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format -i

clean:
	@# A test stack left running would lose its folder under it.
	-$(STACK) stop $(BUILD_DIR)/test-stack
	rm -rf $(BUILD_DIR)
