// SPDX-License-Identifier: BSD-2-Clause
/* loupe-bench-sc: the time one cheap syscall takes, in ns, under whatever is attached to sys_enter/sys_exit.
 *
 *   loupe-bench-sc [-n CALLS] [-r REPS] [-c CPU] [-w WARMUP_MS]
 *     -n  getppid() calls per repetition (default 1000000)
 *     -r  repetitions (default 5); the median repetition is the result
 *     -c  CPU to pin to (default: the last CPU this process may run on)
 *     -w  milliseconds of untimed calls first (default 200): warms caches and the branch predictors, and gives
 *         loupe time to classify this process when the benchmark targets it
 *
 * Prints one JSON line: {"calls":N,"reps":R,"cpu":C,"median_ns":..,"min_ns":..,"max_ns":..,"reps_ns":[..],
 * "wall_median_ns":..,"wall_min_ns":..,"wall_max_ns":..,"wall_reps_ns":[..]}: ns per call by this thread's CPU time,
 * then by the wall clock (see below).
 * getppid() does no work, cannot be answered by the vDSO and is not cached by glibc, so the time per call is the
 * syscall entry/exit path plus whatever the attached programs add. The executable's name is its comm
 * ("loupe-bench-sc"), which is how the benchmark targets it (--target bench=comm:^loupe-bench-sc$). */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct summary {
	double median, min, max;
};

static struct summary summarise(const double *v, long n)
{
	double *s = malloc((size_t)n * sizeof(*s));
	struct summary r = {0};
	if (!s)
		return r;
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	r.median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	r.min = s[0];
	r.max = s[n - 1];
	free(s);
	return r;
}

static long parse_long(const char *opt, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max) {
		fprintf(stderr, "loupe-bench-sc: bad %s '%s': expected %ld..%ld\n", opt, s, min, max);
		exit(2);
	}
	return v;
}

static void run_calls(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
}

int main(int argc, char **argv)
{
	long calls = 1000000, reps = 5, cpu_id = -1, warmup_ms = 200;
	int c;
	while ((c = getopt(argc, argv, "n:r:c:w:h")) != -1) {
		switch (c) {
		case 'n': calls = parse_long("-n", optarg, 1000, 1000000000); break;
		case 'r': reps = parse_long("-r", optarg, 1, 1000); break;
		case 'c': cpu_id = parse_long("-c", optarg, 0, CPU_SETSIZE - 1); break;
		case 'w': warmup_ms = parse_long("-w", optarg, 0, 60000); break;
		case 'h':
			puts("usage: loupe-bench-sc [-n CALLS] [-r REPS] [-c CPU] [-w WARMUP_MS]");
			return 0;
		default: return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "loupe-bench-sc: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* The comm is normally set from the file name at exec; set it too in case the binary was renamed. */
	prctl(PR_SET_NAME, "loupe-bench-sc", 0, 0, 0);

	/* One CPU: no migrations in the timed loop, and the per-CPU state the programs touch stays on one CPU. */
	cpu_set_t set;
	CPU_ZERO(&set);
	if (cpu_id < 0) {
		if (sched_getaffinity(0, sizeof(set), &set)) {
			fprintf(stderr, "loupe-bench-sc: sched_getaffinity: %s\n", strerror(errno));
			return 1;
		}
		for (int i = CPU_SETSIZE - 1; i >= 0; i--)
			if (CPU_ISSET(i, &set)) {
				cpu_id = i;
				break;
			}
		CPU_ZERO(&set);
	}
	CPU_SET(cpu_id, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		fprintf(stderr, "loupe-bench-sc: cannot pin to CPU %ld: %s\n", cpu_id, strerror(errno));
		return 1;
	}

	uint64_t until = clock_ns(CLOCK_MONOTONIC) + (uint64_t)warmup_ms * 1000000ull;
	while (clock_ns(CLOCK_MONOTONIC) < until)
		run_calls(10000);

	/* Two clocks around every repetition: the wall clock (CLOCK_MONOTONIC), and this thread's CPU time
	 * (CLOCK_THREAD_CPUTIME_ID), which leaves out the time other tasks ran on this CPU. On a shared 2-vCPU
	 * machine the second is much steadier; both are reported. */
	double *cpu_ns = calloc((size_t)reps, sizeof(double)), *wall_ns = calloc((size_t)reps, sizeof(double));
	if (!cpu_ns || !wall_ns) {
		fprintf(stderr, "loupe-bench-sc: out of memory\n");
		return 1;
	}
	for (long r = 0; r < reps; r++) {
		uint64_t w0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		run_calls(calls);
		uint64_t c1 = clock_ns(CLOCK_THREAD_CPUTIME_ID), w1 = clock_ns(CLOCK_MONOTONIC);
		cpu_ns[r] = (double)(c1 - c0) / (double)calls;
		wall_ns[r] = (double)(w1 - w0) / (double)calls;
	}
	struct summary cpu = summarise(cpu_ns, reps), wall = summarise(wall_ns, reps);
	printf("{\"calls\":%ld,\"reps\":%ld,\"cpu\":%ld,\"median_ns\":%.2f,\"min_ns\":%.2f,\"max_ns\":%.2f,"
	       "\"wall_median_ns\":%.2f,\"wall_min_ns\":%.2f,\"wall_max_ns\":%.2f,\"reps_ns\":[",
	       calls, reps, cpu_id, cpu.median, cpu.min, cpu.max, wall.median, wall.min, wall.max);
	for (long r = 0; r < reps; r++)
		printf("%s%.2f", r ? "," : "", cpu_ns[r]);
	printf("],\"wall_reps_ns\":[");
	for (long r = 0; r < reps; r++)
		printf("%s%.2f", r ? "," : "", wall_ns[r]);
	printf("]}\n");
	free(cpu_ns);
	free(wall_ns);
	return 0;
}
