// SPDX-License-Identifier: BSD-2-Clause
/* libdeepchain.so: the library half of deepchain's call chain (deepchain.c has the whole chain and how both halves
 * are built): dc_lib_b calls back into the executable, dc_lib_d calls dc_leaf, which spins. Every function is
 * noinline, keeps a local through volatile (a real stack frame: its CFA moves off rsp + 8) and works after its
 * call (never a tail call). dc_leaf reads the clock only every million rounds, so samples land in dc_leaf itself,
 * not in the vDSO. */
#include <time.h>

#include "deepchain.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noinline)) double dc_leaf(double until)
{
	volatile unsigned long x = 0;
	volatile double rounds = 0;
	do {
		for (int i = 0; i < 1000000; i++)
			x = x * 3 + 1;
		rounds = rounds + 1;
	} while (now() < until);
	return rounds;
}

__attribute__((noinline)) double dc_lib_d(double until)
{
	volatile double local[2] = {until, 0};
	local[1] = dc_leaf(local[0]);
	return local[1] * 2 + local[0];
}

__attribute__((noinline)) double dc_lib_b(double until, double (*cb)(double))
{
	volatile double local[2] = {until, 0};
	local[1] = cb(local[0]);
	return local[1] - local[0];
}
