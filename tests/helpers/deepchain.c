// SPDX-License-Identifier: BSD-2-Clause
/* A known deep call chain without frame pointers, across this executable and a shared library (libdeepchain.c),
 * for the unwinder's tests: main -> dc_main_a -> dc_lib_b (library) -> dc_main_c (here, called back) -> dc_lib_d
 * (library) -> dc_leaf (library) spins on the CPU. Built with -O2 -fomit-frame-pointer (Makefile; PIE as
 * deepchain, non-PIE as deepchain-nopie): no function sets up rbp, so a frame-pointer walk loses the chain at the
 * first frame and only .eh_frame unwinding finds it. Each function calls the next and then uses its result, so no
 * call is a tail call. Usage: deepchain SECONDS: waits for a line on stdin, spins for SECONDS, prints the CPU
 * seconds it used. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "deepchain.h"

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noinline)) long dc_main_c(double until, volatile long *sink)
{
	volatile long local[4] = {1, 2, 3, 4};
	long r = dc_lib_d(until, sink);
	return r + local[r & 3];
}

__attribute__((noinline)) long dc_main_a(double until, volatile long *sink)
{
	volatile long local[4] = {5, 6, 7, 8};
	long r = dc_lib_b(until, sink, dc_main_c);
	return r + local[r & 3];
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 3;
	volatile long sink = 0;
	if (getchar() == EOF)
		return 1;
	double t0 = cpu_now();
	long r = dc_main_a(secs, &sink);
	printf("%.6f\n", cpu_now() - t0);
	return r == 42; /* never: the chain's value is not known to the compiler */
}
