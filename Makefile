# moonstack: the two commands a fresh Debian machine needs are `make run` and `make test`.
# Both install missing packages (apt), configure and build first.
BUILD       ?= build
BUILD_ASAN  ?= build-asan
BUILD_TYPE  ?= RelWithDebInfo
JOBS        ?= $(shell nproc)
PREFIX      ?= /usr/local
CMAKE_FLAGS ?=

MOONSTACK := $(BUILD)/runtime/moonstack

.PHONY: all deps deps-build deps-run build run test test-asan asan install bench lint format clean fuzz

all: build

deps-build:
	@scripts/install-deps.sh build

deps-run:
	@scripts/install-deps.sh run

deps:
	@scripts/install-deps.sh test

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

build: deps-build $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

## run: the whole local stack (KMS, gateway, VMM with its dashboard) and examples/apps/hello
## deployed through it; Ctrl-C stops everything. State in ./.moonstack-dev (DEV_DIR=...).
## Needs root (network namespaces, WireGuard): `sudo make run` elsewhere.
DEV_DIR ?= .moonstack-dev
run: build deps-run
	$(MOONSTACK) dev up --dir $(DEV_DIR)

## test: every suite through CTest (unit-c, unit-lua, binding, functional, lint)
test: deps build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

## test-asan: the C and binding suites (and functional, but the TCG guest ones) under ASan + UBSan
test-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DMOONSTACK_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS) -L 'unit-c|binding|functional' -LE vm

## fuzz: the libFuzzer targets (clang) over their seeds, one after the other: FUZZ_SECONDS each
## (a set time), or FUZZ_RUNS executions each when FUZZ_SECONDS is empty; e.g.
## make fuzz FUZZ_SECONDS=600, make fuzz FUZZ_TARGETS=proxy_sni FUZZ_SECONDS= FUZZ_RUNS=10000000
## (tests/fuzz/README.md). FUZZ_FLAGS go to libFuzzer as well.
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?= 20000
FUZZ_FLAGS   ?=
FUZZ_TARGETS ?= proxy_sni proxy_pp proxy_route tdx_quote tdx_ccel dcap_json x509_ext \
  lua_scale lua_msgpack lua_proto lua_prpc_json lua_json lua_eventlog_json lua_app_compose \
  lua_http_head
fuzz: build
	cmake --build $(BUILD) --target fuzzers
	@for t in $(FUZZ_TARGETS); do \
	  tests/fuzz/run.sh $(BUILD)/tests/fuzz/fuzz_$$t tests/fuzz/corpus/$$t \
	    $(BUILD)/tests/fuzz/work-$$t \
	    $(if $(strip $(FUZZ_SECONDS)),-max_total_time=$(FUZZ_SECONDS),-runs=$(FUZZ_RUNS)) \
	    -print_final_stats=1 $(FUZZ_FLAGS) || exit 1; \
	done

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

bench: build
	scripts/install-deps.sh bench
	@if [ -x tests/bench/run.sh ]; then tests/bench/run.sh $(MOONSTACK); else echo "no benchmarks yet"; fi

lint: deps build
	ctest --test-dir $(BUILD) --output-on-failure -L lint

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
