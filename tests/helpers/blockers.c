// SPDX-License-Identifier: BSD-2-Clause
/* A process that blocks for known times in known functions, for the off-CPU profiler test: once a line arrives
 * on stdin, block_alpha sleeps argv[1] times 50 ms and block_beta argv[1] times 100 ms. The sleeps are raw
 * nanosleep syscalls inlined into each function (a libc wrapper has no frame pointer, and the frame-pointer walk
 * would then skip the function that called it). Built with frame pointers (the Makefile's helper rule).
 * At the end it prints the wall time each function took ("alpha_s beta_s"): the ground truth for its blocked time,
 * which on a busy machine is longer than the sleeps asked for (timer slack, waiting for a CPU after the wakeup). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>

#include "raw_sleep.h"

__attribute__((noinline)) void block_alpha(int n)
{
	for (int i = 0; i < n; i++)
		raw_sleep_us(50000);
	__asm__ volatile("");
}

__attribute__((noinline)) void block_beta(int n)
{
	for (int i = 0; i < n; i++)
		raw_sleep_us(100000);
	__asm__ volatile("");
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10;
	if (getchar() == EOF)
		return 1;
	double t0 = now();
	block_alpha(n);
	double t1 = now();
	block_beta(n);
	__asm__ volatile("");
	printf("%.6f %.6f\n", t1 - t0, now() - t1);
	return 0;
}
