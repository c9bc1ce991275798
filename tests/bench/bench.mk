# SPDX-License-Identifier: BSD-2-Clause
# Benchmark programs (scripts/bench-cost.sh, scripts/bench.sh), included by the main Makefile: the empty-program floor
# loader, the syscall cost timer, a process making many distinct syscalls (scrape time at scale), the cost
# benchmark's micro-workloads, and the PostgreSQL parser's cost per transaction alone. `make bench` builds them and
# runs the cost benchmark, `make bench-full` the older full one; `make bench-bins` only builds them.
BENCH_DIR  := $(BUILD)/bench
BENCH_BINS := $(BENCH_DIR)/loupe-bench-floor $(BENCH_DIR)/loupe-bench-sc $(BENCH_DIR)/loupe-bench-mix \
              $(BENCH_DIR)/loupe-bench-cost $(BENCH_DIR)/loupe-bench-pgparse

.PHONY: bench-bins
bench-bins: $(BENCH_BINS)
bench: $(BENCH_BINS)

$(BENCH_DIR)/floor.bpf.o: tests/bench/floor.bpf.c vmlinux/$(ARCH)/vmlinux.h | $(BENCH_DIR)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c -o $@ $<

$(BENCH_DIR)/floor.skel.h: $(BENCH_DIR)/floor.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(BENCH_DIR)/loupe-bench-floor: tests/bench/floor.c $(BENCH_DIR)/floor.skel.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -I$(BENCH_DIR) -o $@ $< -lbpf -lelf -lz

$(BENCH_DIR)/loupe-bench-sc: tests/bench/syscall_cost.c | $(BENCH_DIR)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -o $@ $<

$(BENCH_DIR)/loupe-bench-mix: tests/bench/syscall_mix.c | $(BENCH_DIR)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -o $@ $<

$(BENCH_DIR)/loupe-bench-cost: tests/bench/cost.c | $(BENCH_DIR)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -o $@ $<

$(BENCH_DIR)/loupe-bench-pgparse: tests/bench/pgparse.c $(BUILD)/obj/parsers/pgwire.o $(BUILD)/obj/lib/hash.o | $(BENCH_DIR)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) -o $@ $< $(BUILD)/obj/parsers/pgwire.o $(BUILD)/obj/lib/hash.o

$(BENCH_DIR):
	$(Q)mkdir -p $@
