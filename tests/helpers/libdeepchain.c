// SPDX-License-Identifier: BSD-2-Clause
/* The library half of tests/helpers/deepchain.c's chain: dc_lib_b calls back into the executable, dc_lib_d calls
 * dc_leaf, which spins on the CPU for the given seconds of process CPU time. Built as libdeepchain.so with
 * -O2 -fomit-frame-pointer -fPIC. */
#include <time.h>

#include "deepchain.h"

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noinline)) long dc_leaf(double secs, volatile long *sink)
{
	double until = cpu_now() + secs;
	long x = 0;
	while (cpu_now() < until)
		for (int i = 0; i < 20000; i++)
			x += (long)i * i ^ *sink;
	*sink = x;
	return x;
}

__attribute__((noinline)) long dc_lib_d(double secs, volatile long *sink)
{
	volatile long local[4] = {9, 10, 11, 12};
	long r = dc_leaf(secs, sink);
	return r + local[r & 3];
}

__attribute__((noinline)) long dc_lib_b(double secs, volatile long *sink, long (*back)(double, volatile long *))
{
	volatile long local[4] = {13, 14, 15, 16};
	long r = back(secs, sink);
	return r + local[r & 3];
}
