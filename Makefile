# Shoal: plain GNU make with pkg-config (README.md, "Architecture", has the layout).
#   make            build every binary into $(BUILD)/
#   make bins       only the programs (no unit tests; what the lab VMs install)
#   make test       unit tests, then integration tests on the namespace lab
#   make check      the same under ASan+UBSan, built into build-san/
#   make fuzz       each libFuzzer target for FUZZ_SECONDS
#   make demo       the namespace lab with a scheduler and 3 agents
#   make deps       install what is missing from Debian's archive
#   make bench      every benchmark in bench/ (root; peers from deps.sh --bench)

BUILD ?= build
SAN ?=
NODES ?= 3
FUZZ_SECONDS ?= 30
# Options for deps.sh when a target installs what is missing (the lab VMs: --build-only).
DEPS_ARGS ?=
PROTOC_C ?= protoc-c

PKGS := libevent libevent_pthreads libprotobuf-c yaml-0.1 libsodium sqlite3 libarchive \
	libseccomp libmnl jansson libcurl libcrypto

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(CFLAGS) $(WARN) -I. -Icommon -I$(BUILD)/proto \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
ifneq ($(SAN),)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# Every module outside a main.c is a library object; a new module needs no Makefile edit.
PROTO_C := $(BUILD)/proto/shoal.pb-c.c
PROTO_H := $(BUILD)/proto/shoal.pb-c.h
libsrc = $(filter-out %main.c,$(wildcard $(1)/*.c))
COMMON_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(call libsrc,common)) $(BUILD)/proto/shoal.pb-c.o
SCHED_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(call libsrc,scheduler))
AGENT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(call libsrc,agent))
RUNTIME_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(call libsrc,runtime))
CLI_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(call libsrc,cli))

LIBS := $(BUILD)/libshoal_sched.a $(BUILD)/libshoal_agent.a $(BUILD)/libshoal_runtime.a \
	$(BUILD)/libshoal_cli.a $(BUILD)/libshoal_common.a

BINS := $(BUILD)/shoal-scheduler $(BUILD)/shoal-agent $(BUILD)/shoal
# Front ends of the runtime library: shoalrt (one file per verb) and the per-container shim.
# The verbs that need libcurl and libarchive (pull, push, import) are shoalrt-image's, which
# shoalrt runs for them (runtime/shoalrt/delegate.h): shoalrt itself links statically.
SHOALRT_ALL := $(patsubst %.c,$(BUILD)/%.o,$(wildcard runtime/shoalrt/*.c))
SHOALRT_IMAGE_VERBS := $(patsubst %,$(BUILD)/runtime/shoalrt/%.o,pull push import)
SHOALRT_OBJ := $(filter-out $(SHOALRT_IMAGE_VERBS),$(SHOALRT_ALL))
SHOALRT_IMAGE_OBJ := $(BUILD)/runtime/shoalrt/main.o $(SHOALRT_IMAGE_VERBS)
SHIM_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard runtime/shim/*.c))
ifneq ($(SHOALRT_OBJ),)
BINS += $(BUILD)/shoalrt $(BUILD)/shoalrt-image
endif
ifneq ($(SHIM_OBJ),)
BINS += $(BUILD)/shoal-shim
endif

UNIT_SRC := $(wildcard tests/unit/*_test.c)
# Test tools (tests/tools/NAME.c, one file each): clients the integration tests drive.
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(wildcard tests/tools/*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))

.PHONY: all bins build-all build-bins deps deps-check test unit integration check fuzz format format-check clean \
	lab-up lab-down demo images bench
.DEFAULT_GOAL := all
.SECONDARY:

# The pkg-config flags above are read when make parses this file, so on a machine without
# the -dev packages they would be empty for the whole run: the targets that build install
# what is missing first, then build in a second make that parses the file anew.
all: deps-check
	@$(MAKE) --no-print-directory build-all

bins: deps-check
	@$(MAKE) --no-print-directory build-bins

build-all: $(BINS) $(UNIT_BINS) $(TOOL_BINS)

build-bins: $(BINS)

# Install missing packages only when something is missing: a cheap dpkg query otherwise.
deps-check:
	@bash vagrant/provision/deps.sh --check $(DEPS_ARGS) >/dev/null 2>&1 || \
		bash vagrant/provision/deps.sh $(DEPS_ARGS)

deps:
	bash vagrant/provision/deps.sh

# The version the programs report (`shoal version`): `git describe` of the checkout, else
# SHOAL_VERSION's fallback (a tarball). The header is rewritten only when it changes.
SHOAL_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1-dev)
$(BUILD)/gen/shoal_version.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define SHOAL_VERSION "$(SHOAL_VERSION)"' >$@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/common/version.o: $(BUILD)/gen/shoal_version.h
$(BUILD)/common/version.o: ALL_CFLAGS += -I$(BUILD)/gen
.PHONY: FORCE
FORCE:

$(PROTO_C) $(PROTO_H) &: proto/shoal.proto
	@mkdir -p $(BUILD)/proto
	$(PROTOC_C) --proto_path=proto --c_out=$(BUILD)/proto proto/shoal.proto

# Generated code is not ours to warn about.
$(BUILD)/proto/shoal.pb-c.o: $(PROTO_C)
	$(CC) -std=gnu11 $(CFLAGS) $(filter -fsanitize% -fno-%,$(ALL_CFLAGS)) \
		$(shell pkg-config --cflags libprotobuf-c) -c $< -o $@

# V=1 shows the full commands.
ifeq ($(V),)
Q := @
else
Q :=
endif

$(BUILD)/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libshoal_common.a: $(COMMON_OBJ)
$(BUILD)/libshoal_sched.a: $(SCHED_OBJ)
$(BUILD)/libshoal_agent.a: $(AGENT_OBJ)
$(BUILD)/libshoal_runtime.a: $(RUNTIME_OBJ)
$(BUILD)/libshoal_cli.a: $(CLI_OBJ)
$(LIBS):
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/shoal-scheduler: $(BUILD)/scheduler/main.o $(BUILD)/libshoal_sched.a $(BUILD)/libshoal_common.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# --as-needed: the agent runs pulls and imports in shoalrt-image and must not load libcurl,
# libarchive or libcrypto (~8 MiB of RSS); the sanitizers' link turns the default off.
$(BUILD)/shoal-agent: $(BUILD)/agent/main.o $(BUILD)/libshoal_agent.a $(BUILD)/libshoal_runtime.a $(BUILD)/libshoal_common.a
	$(CC) $(LDFLAGS) -o $@ $^ -Wl,--as-needed $(LDLIBS)
$(BUILD)/shoal: $(BUILD)/cli/main.o $(BUILD)/libshoal_cli.a $(BUILD)/libshoal_common.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# The shim is exec'd once per container start: linked statically it skips the dynamic loader
# (0.6 -> 0.3 ms per exec measured; it used to load 20 libraries, 2 ms, before it stopped
# pulling in the image store). shoalrt likewise: `shoalrt run` spent ~30 ms loading the 47
# libraries of libcurl and libarchive on a loaded host. Sanitizer builds stay dynamic: ASan
# needs its shared runtime.
ifeq ($(SAN),)
SHIM_LINK := -static-pie
SHIM_LIBS := $(shell pkg-config --static --libs jansson libseccomp libsodium 2>/dev/null) -lpthread -lm
SHOALRT_LIBS := $(SHIM_LIBS)
else
SHIM_LINK :=
SHIM_LIBS := $(LDLIBS)
SHOALRT_LIBS := -Wl,--as-needed $(LDLIBS)
endif
$(BUILD)/shoalrt: $(SHOALRT_OBJ) $(BUILD)/libshoal_runtime.a $(BUILD)/libshoal_common.a
	$(CC) $(LDFLAGS) $(SHIM_LINK) -o $@ $^ $(SHOALRT_LIBS)
$(BUILD)/shoalrt-image: $(SHOALRT_IMAGE_OBJ) $(BUILD)/libshoal_runtime.a $(BUILD)/libshoal_common.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/shoal-shim: $(SHIM_OBJ) $(BUILD)/libshoal_runtime.a $(BUILD)/libshoal_common.a
	$(CC) $(LDFLAGS) $(SHIM_LINK) -o $@ $^ $(SHIM_LIBS)

# A unit test links the module libraries and the shared fixtures (tests/unit/fixture.c),
# never a main.c.
$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/fixture.o $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/tests/unit/fixture.o $(LIBS) $(LDLIBS) \
		$(shell pkg-config --libs cmocka)

# A test tool links the libraries like a unit test, never a main.c.
$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBS) $(LDLIBS)

test: all
	BUILD=$(BUILD) bash tests/run.sh

unit: all
	BUILD=$(BUILD) bash tests/run.sh --unit

integration: all
	BUILD=$(BUILD) bash tests/run.sh --integration

check:
	$(MAKE) BUILD=build-san SAN=1 CFLAGS="-O1 -g" test

# libFuzzer targets: clang, each target linked with the libraries built by clang (clang flags
# libseccomp's own SCMP_A0() macros with -Wmissing-field-initializers, gcc does not).
FUZZ_SRC := $(wildcard tests/fuzz/*.c)
# The agent's parser a target needs (the whole agent library pulls in every module).
FUZZ_AGENT_OBJ := build-fuzz/agent/proxy_http_parse.o
fuzz: deps-check
	$(MAKE) BUILD=build-fuzz CC=clang CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" \
		WARN="$(WARN) -Wno-missing-field-initializers" \
		build-fuzz/libshoal_common.a build-fuzz/libshoal_sched.a build-fuzz/libshoal_runtime.a \
		$(FUZZ_AGENT_OBJ)
	@set -e; for f in $(FUZZ_SRC); do \
		t=build-fuzz/fuzz/$$(basename $$f .c); mkdir -p build-fuzz/fuzz $$t.corpus; \
		clang -std=gnu11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -I. -Icommon \
			-Iruntime -Ibuild-fuzz/proto $$f build-fuzz/libshoal_sched.a $(FUZZ_AGENT_OBJ) \
			build-fuzz/libshoal_runtime.a build-fuzz/libshoal_common.a \
			$(LDLIBS) -o $$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		if ! $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$$t- \
			$$t.corpus tests/fuzz/corpus/$$(basename $$f .c) >$$t.log 2>&1; then \
			tail -40 $$t.log; echo "fuzz: $$t FAILED (log: $$t.log)"; exit 1; \
		fi; \
		tail -5 $$t.log; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') && echo "format ok"

lab-up: all
	bash tests/lab/lab up $(NODES)

lab-down:
	bash tests/lab/lab down

demo: all images
	bash tests/lab/demo

# Demo images as OCI layouts in $(BUILD)/images/NAME_TAG/, built offline from busybox-static.
images:
	bash images/build.sh $(BUILD)/images

# Benchmark tools: simagents simulates many agents over the real protocol (bench/scale.sh).
BENCH_BINS := $(BUILD)/bench/simagents
$(BUILD)/bench/simagents: $(BUILD)/bench/simagents.o $(BUILD)/libshoal_common.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The peers the benchmarks compare against (crun, haproxy, wrk, hyperfine) come from Debian.
bench: all
	@$(MAKE) --no-print-directory $(BENCH_BINS)
	@bash vagrant/provision/deps.sh --check --bench >/dev/null 2>&1 || bash vagrant/provision/deps.sh --bench
	BUILD=$(BUILD) bash bench/run

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
