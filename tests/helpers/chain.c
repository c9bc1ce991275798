// SPDX-License-Identifier: BSD-2-Clause
/* A process with a known call chain, for the profiler tests: main -> chain_alpha -> chain_beta -> chain_gamma,
 * which spins for argv[1] seconds once a line arrives on stdin. Built with frame pointers (the Makefile's helper
 * rule). The empty asm after each call keeps it a call (no tail call would leave its frame out), and the spin
 * reads the clock only every million iterations, so samples land in chain_gamma itself, not in the vDSO.
 * At the end it prints the CPU time the spin got (CLOCK_PROCESS_CPUTIME_ID), the ground truth for sample counts:
 * on a busy machine a spinner gets less than its wall time. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clock_s(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

__attribute__((noinline)) void chain_gamma(double until)
{
	volatile unsigned long x = 0;
	do {
		for (int i = 0; i < 1000000; i++)
			x++;
	} while (now() < until);
}

__attribute__((noinline)) void chain_beta(double until)
{
	chain_gamma(until);
	__asm__ volatile("");
}

__attribute__((noinline)) void chain_alpha(double until)
{
	chain_beta(until);
	__asm__ volatile("");
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	if (getchar() == EOF)
		return 1;
	double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	chain_alpha(now() + secs);
	__asm__ volatile("");
	printf("%.6f\n", clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0);
	return 0;
}
