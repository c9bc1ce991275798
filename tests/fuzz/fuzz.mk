# SPDX-License-Identifier: BSD-2-Clause
# libFuzzer targets for the parsers of untrusted bytes (DESIGN.md section 6), included by the main Makefile
# (-include tests/fuzz/fuzz.mk). Each target is built with clang from the modules it fuzzes, with ASan and UBSan.
#   make fuzz-bins                 build build/fuzz/fuzz_NAME for every NAME of FUZZ_TARGETS
#   make fuzz [FUZZ_SECONDS=60]    run each target for FUZZ_SECONDS; the corpus grows in build/fuzz/corpus/NAME,
#                                  crashes land in build/fuzz/artifacts/ (reproduce: build/fuzz/fuzz_NAME FILE)
#   make fuzz-smoke                a few seconds each (FUZZ_SMOKE_SECONDS=5); what the test suite runs
# Fresh corpora start from seeds the targets write themselves (LOUPE_FUZZ_SEEDS, see tests/fuzz/fuzz_http.c) and from
# the committed corpus of long runs, tests/fuzz/corpus/NAME (read, never written: new units go to build/fuzz/corpus).
ifndef LOUPE_FUZZ_MK
LOUPE_FUZZ_MK := 1

FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_DIR           := $(BUILD)/fuzz
# The targets of the protocol parsers, each built with all of FUZZ_MODULES; then those with their own sources
# (FUZZ_OWN: FUZZ_SRCS_NAME and FUZZ_LIBS_NAME).
FUZZ_PARSERS       := route http websocket pgwire sql params
FUZZ_OWN           := target_rules procfs elf pymem
FUZZ_TARGETS       := $(FUZZ_PARSERS) $(FUZZ_OWN)
FUZZ_BINS          := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))
FUZZ_MODULES       := $(patsubst %,src/parsers/%.c,$(FUZZ_PARSERS))
# --target selectors and /proc/PID/stat
FUZZ_SRCS_target_rules := src/parsers/target_rules.c src/lib/util.c
FUZZ_LIBS_target_rules := -lz
# /proc/PID/maps (with the ELF tables of the files it names), /proc/kallsyms, perf maps
FUZZ_SRCS_procfs   := $(patsubst %,src/profile/%.c,procmaps kallsyms perfmap symcache elfsyms debugfile) src/lib/util.c
FUZZ_LIBS_procfs   := -lelf -lz
# ELF files: function tables, debug files, unwind rows from CFI, CPython detection
FUZZ_SRCS_elf      := $(patsubst %,src/profile/%.c,symcache elfsyms debugfile unwind_table pyruntime kallsyms perfmap \
                      procmaps) src/lib/util.c src/lib/hash.c
FUZZ_LIBS_elf      := -ldw -lelf -lz
# A CPython process's memory (/proc/self/mem over a fake interpreter) and the maps reader of pyruntime.c
FUZZ_SRCS_pymem    := $(patsubst %,src/profile/%.c,pyruntime procmaps symcache elfsyms debugfile kallsyms perfmap) \
                      src/lib/util.c src/lib/hash.c
FUZZ_LIBS_pymem    := -lelf -lz
FUZZ_CFLAGS        := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                      -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
                      -D_GNU_SOURCE -Isrc

.PHONY: fuzz fuzz-bins fuzz-smoke
fuzz-bins: $(FUZZ_BINS)

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_MODULES) $(FUZZ_MODULES:.c=.h) | $(FUZZ_DIR)
	$(call msg,FUZZ-CC,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_MODULES) -lpg_query

# Explicit rules (they take precedence over the pattern rule above) for the targets with their own sources.
FUZZ_OWN_HDRS := tests/fuzz/fuzz_file.h $(wildcard src/lib/*.h src/parsers/*.h src/profile/*.h include/*.h)
define fuzz_own_rule
$(FUZZ_DIR)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(FUZZ_SRCS_$(1)) $(FUZZ_OWN_HDRS) | $(FUZZ_DIR)
	$$(call msg,FUZZ-CC,$$@)
	$$(Q)$$(FUZZ_CC) $$(FUZZ_CFLAGS) -Iinclude -o $$@ $$< $(FUZZ_SRCS_$(1)) $(FUZZ_LIBS_$(1))
endef
$(foreach t,$(FUZZ_OWN),$(eval $(call fuzz_own_rule,$(t))))

$(FUZZ_DIR):
	$(Q)mkdir -p $@ $@/artifacts

# Run each target in turn; stop at the first one that finds a crash or a broken invariant.
# $(1): seconds per target.
define fuzz_run
	$(Q)set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts; \
		printf '  %-8s %s (%ss)\n' FUZZ $$t $(1); \
		LOUPE_FUZZ_SEEDS=$(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(1) -timeout=10 \
			-print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- \
			$(FUZZ_DIR)/corpus/$$t $$(ls -d tests/fuzz/corpus/$$t 2>/dev/null) > $(FUZZ_DIR)/$$t.log 2>&1 \
			|| { tail -n 40 $(FUZZ_DIR)/$$t.log; echo "fuzz_$$t failed: see $(FUZZ_DIR)/$$t.log"; exit 1; }; \
		grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' $(FUZZ_DIR)/$$t.log | sed 's/^/           /'; \
	done
endef

fuzz: $(FUZZ_BINS)
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: $(FUZZ_BINS)
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))

endif
