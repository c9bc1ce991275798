// SPDX-License-Identifier: BSD-2-Clause
/* A process with a known deep call chain across an executable and a shared library, built WITHOUT frame pointers,
 * for the native unwinding tests (.eh_frame rules, src/profile/unwind_table.c and bpf/profiler.bpf.c):
 *   main -> dc_main_a -> dc_lib_b (libdeepchain.so) -> dc_main_c (here, called back through a function pointer)
 *        -> dc_lib_d (libdeepchain.so) -> dc_leaf (libdeepchain.so: spins on the CPU)
 * `deepchain SECONDS` waits for a line on stdin ("go"), spins in dc_leaf for SECONDS, then prints the CPU time the
 * spin got (CLOCK_PROCESS_CPUTIME_ID), the ground truth for sample counts, like chain.c.
 *
 * Built (Makefile) with -O2 -fomit-frame-pointer -fasynchronous-unwind-tables, both halves, without
 * -mno-omit-leaf-frame-pointer: as $(BUILD)/tests/deepchain (PIE) and $(BUILD)/tests/deepchain-nopie (-no-pie),
 * which find $(BUILD)/tests/libdeepchain.so by their rpath $ORIGIN. No function of the chain sets up a frame
 * pointer (checked with objdump -d: no push %rbp; mov %rsp,%rbp in main, dc_main_a, dc_main_c, dc_lib_b, dc_lib_d
 * or dc_leaf), so a frame-pointer walk loses the chain and only .eh_frame recovers it. dc_main_c also puts a value
 * that is no address (0xdc0dc0dc) in rbp before its call: gcc saves the caller's rbp (push %rbp, no mov) with a
 * CFI rule for it, and an unwinder must restore rbp from that slot (a UW_RBP_CFA row) to unwind past dc_main_c.
 * Every function is noinline, keeps a local through volatile (a real stack frame: its CFA moves off rsp + 8) and
 * works after its call (never a tail call, which would leave its frame out). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "deepchain.h"

static double clock_s(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noinline)) double dc_main_c(double until)
{
	volatile double local[2] = {until, 0};
	/* rbp holds no address below here (the file comment says why) */
	__asm__ volatile("mov $0xdc0dc0dc, %%ebp" ::: "rbp");
	local[1] = dc_lib_d(local[0]);
	return local[1] + local[0] / 2;
}

__attribute__((noinline)) double dc_main_a(double until)
{
	volatile double local[2] = {until, 0};
	local[1] = dc_lib_b(local[0], dc_main_c);
	return local[1] * 3;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	volatile double r = dc_main_a(clock_s(CLOCK_MONOTONIC) + secs);
	printf("%.6f\n", clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0);
	return r < 0;
}
