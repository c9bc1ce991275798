# SPDX-License-Identifier: BSD-2-Clause
# Loupe — build. `make` builds build/loupe; `make test` runs every suite on this build (scripts/run-tests.sh;
# scripts/test.sh also installs the packages first);
# `make V=1` shows full commands.
.DELETE_ON_ERROR:
.SUFFIXES:
.SECONDARY:

VERSION    := 0.1.0
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

BUILD   ?= build
CC      ?= cc
CLANG   ?= clang
BPFTOOL ?= bpftool
ARCH    ?= x86

ifeq ($(V),1)
  Q =
  msg =
else
  Q = @
  msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

CFLAGS   ?= -O2 -g
# SAN_CFLAGS: sanitizer flags (make asan); they come after CFLAGS' -O2, and keep the warnings and -D_GNU_SOURCE below
# (a CFLAGS given on the command line would replace them).
CFLAGS   += $(SAN_CFLAGS) -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
            -D_GNU_SOURCE
INCLUDES := -Iinclude -Isrc -I$(BUILD)
LDLIBS   := -lbpf -ldw -lelf -lz -lmicrohttpd -lgnutls -lyaml -lcrypt -lpg_query -lcap-ng -lpthread -lm

BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
              -Iinclude -Ibpf -Ivmlinux/$(ARCH)

BPF_SRCS   := $(wildcard bpf/*.bpf.c)
BPF_OBJS   := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRCS))
SKELS      := $(patsubst bpf/%.bpf.c,$(BUILD)/%.skel.h,$(BPF_SRCS))

# src/ is grouped by role (README, Layout); objects mirror it under $(BUILD)/obj/.
SRCS       := $(wildcard src/*/*.c)
HDRS       := $(wildcard include/*.h src/*/*.h)
OBJS       := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
LIB_OBJS   := $(filter-out $(BUILD)/obj/cli/main.o,$(OBJS))
GEN_HDRS   := $(BUILD)/syscall_names.h $(BUILD)/version.h

# Protocol buffers (proto/*.proto: the pprof schema): protoc-c generates C into $(BUILD)/proto at build time,
# compiled like a module; nothing generated is committed.
PROTOC_C   ?= protoc-c
PROTOS     := $(wildcard proto/*.proto)
PROTO_OBJS := $(patsubst proto/%.proto,$(BUILD)/obj/%.pb-c.o,$(PROTOS))
OBJS       += $(PROTO_OBJS)
LIB_OBJS   += $(PROTO_OBJS)
GEN_HDRS   += $(patsubst proto/%.proto,$(BUILD)/proto/%.pb-c.h,$(PROTOS))
INCLUDES   += -I$(BUILD)/proto
LDLIBS     += -lprotobuf-c

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
HELPER_SRCS := $(filter-out tests/helpers/libdeepchain.c,$(wildcard tests/helpers/*.c))
HELPER_BINS := $(patsubst tests/helpers/%.c,$(BUILD)/tests/%,$(HELPER_SRCS)) $(BUILD)/tests/deepchain-nopie

.PHONY: FORCE all clean test unit-test bpf-test e2e-test bench bench-full demo stack asan run fuzz check-deps
all: $(BUILD)/loupe

$(BUILD)/loupe: $(OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: src/%.c $(SKELS) $(GEN_HDRS) $(HDRS) | $(BUILD)/obj
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) -c -o $@ $<

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.bpf.h include/*.h) vmlinux/$(ARCH)/vmlinux.h | $(BUILD)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c -o $@ $<

$(BUILD)/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

# Rewritten only when the version or commit changes, so one binary never reports two revisions and an
# unchanged tree does not rebuild.
$(BUILD)/version.h: FORCE | $(BUILD)
	$(Q)printf '#define LOUPE_VERSION "%s"\n#define LOUPE_COMMIT "%s"\n' '$(VERSION)' '$(GIT_COMMIT)' > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

FORCE:

$(BUILD)/syscall_names.h: scripts/gen-syscall-names.sh | $(BUILD)
	$(call msg,GEN,$@)
	$(Q)scripts/gen-syscall-names.sh > $@

# One protoc-c run writes both files (a pattern rule with two targets is one grouped recipe).
$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto | $(BUILD)/proto
	$(call msg,PROTOC,$@)
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(BUILD)/proto $<

$(BUILD)/obj/%.pb-c.o: $(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h | $(BUILD)/obj
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) -c -o $@ $<

$(BUILD)/proto:
	$(Q)mkdir -p $@

# Unit tests: cmocka, linked against every module but main.o.
$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB_OBJS) | $(BUILD)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) -Itests/unit -o $@ $< $(LIB_OBJS) $(LDLIBS) -lcmocka

# The unwinder's helper: no frame pointers, a chain across an executable (PIE and not) and a shared library.
DEEP_CFLAGS := -O2 -g -fomit-frame-pointer -fasynchronous-unwind-tables
$(BUILD)/tests/libdeepchain.so: tests/helpers/libdeepchain.c tests/helpers/deepchain.h | $(BUILD)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(DEEP_CFLAGS) -fPIC -shared -o $@ $<

$(BUILD)/tests/deepchain: tests/helpers/deepchain.c tests/helpers/deepchain.h $(BUILD)/tests/libdeepchain.so
	$(call msg,CC,$@)
	$(Q)$(CC) $(DEEP_CFLAGS) -o $@ $< -L$(BUILD)/tests -ldeepchain -Wl,-rpath,'$$ORIGIN'

$(BUILD)/tests/deepchain-nopie: tests/helpers/deepchain.c tests/helpers/deepchain.h $(BUILD)/tests/libdeepchain.so
	$(call msg,CC,$@)
	$(Q)$(CC) $(DEEP_CFLAGS) -no-pie -o $@ $< -L$(BUILD)/tests -ldeepchain -Wl,-rpath,'$$ORIGIN'

$(BUILD)/tests/%: tests/helpers/%.c tests/helpers/raw_sleep.h | $(BUILD)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -fno-omit-frame-pointer -o $@ $< -lpthread

$(BUILD) $(BUILD)/obj $(BUILD)/bpf $(BUILD)/tests:
	$(Q)mkdir -p $@

# Test suites: unit (no root), fuzz smoke, BPF and end-to-end (root); scripts/run-tests.sh runs and counts them.
test: $(BUILD)/loupe $(UNIT_BINS) $(HELPER_BINS)
	$(Q)scripts/run-tests.sh

unit-test: $(UNIT_BINS)
	$(Q)scripts/run-tests.sh unit

bpf-test: $(BUILD)/loupe $(HELPER_BINS)
	$(Q)scripts/run-tests.sh bpf

e2e-test: $(BUILD)/loupe $(HELPER_BINS)
	$(Q)scripts/run-tests.sh e2e

tests: $(UNIT_BINS) $(HELPER_BINS)

# Test helper programs (tests/helpers/*.c): plain C, with frame pointers for stack tests.

bench: $(BUILD)/loupe $(HELPER_BINS)
	$(Q)scripts/bench-cost.sh

bench-full: $(BUILD)/loupe $(HELPER_BINS) bench-bins
	$(Q)scripts/bench.sh

demo: $(BUILD)/loupe
	$(Q)scripts/demo.sh

# loupe built with AddressSanitizer (LeakSanitizer included) and UBSan, any report fatal: build/asan/loupe.
# tests/e2e/test_asan.py runs it under the reference workload, storms and bad input.
# The unit tests whose regressions only a sanitizer sees (test_asan.py runs these builds of them too).
ASAN_UNIT := test_unwinder
ASAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN_CFLAGS="$(ASAN_CFLAGS)" $(BUILD)/asan/loupe \
		$(ASAN_UNIT:%=$(BUILD)/asan/tests/%)

# The monitoring stack on this host (Prometheus, Alertmanager, exporters, loupe, the reference workload under
# load): runs until Ctrl-C. scripts/stack.sh --help for its options and ports.
stack: $(BUILD)/loupe
	$(Q)scripts/stack.sh

run: $(BUILD)/loupe
	$(Q)$(BUILD)/loupe run

clean:
	$(call msg,CLEAN,$(BUILD))
	$(Q)rm -rf $(BUILD)

-include tests/bench/bench.mk
-include tests/fuzz/fuzz.mk
