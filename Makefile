# Orchard: thin wrapper over CMake. The quickstart is `make demo` then `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

.PHONY: all demo test deps configure build bench clean doctor

all: build

# Installs missing Debian packages (needs root or sudo; a no-op when everything is present).
deps:
	@./deploy/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job: PPO on CartPole-v1 through a real replay shard, learner and two actors, until the
# deterministic evaluation reaches a mean return of 475 (examples/quickstart.yaml). Each demo
# starts afresh in $(BUILD_DIR)/demo-run.
demo: build
	@$(BUILD_DIR)/bin/orchard doctor
	@rm -rf $(BUILD_DIR)/demo-run
	@$(BUILD_DIR)/bin/orchard run examples/quickstart.yaml --set run_dir=$(BUILD_DIR)/demo-run

# The whole suite, in parallel, with output on failure.
test: build
	@cd $(BUILD_DIR) && ctest -j $(JOBS) --output-on-failure --timeout 600 $(CTEST_FLAGS)

bench: build
	@./bench/run.sh $(BUILD_DIR)
	@./bench/envs.sh $(BUILD_DIR)

doctor: build
	@$(BUILD_DIR)/bin/orchard doctor

clean:
	@rm -rf $(BUILD_DIR)
