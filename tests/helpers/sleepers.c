// SPDX-License-Identifier: BSD-2-Clause
/* Many short blocks in one known function, for counting off-CPU blocks one by one: once a line arrives on stdin,
 * argv[1] threads each sleep argv[2] times argv[3] microseconds in block_gamma (a raw nanosleep syscall inlined
 * there, as in blockers.c, so the frame-pointer walk keeps the function). Built with frame pointers.
 * With a fourth argument "fork", processes instead: argv[2] children, argv[1] at a time, each sleeping once in
 * block_gamma and exiting at once (a block whose switch-in the kernel did not report is then only valued at the
 * thread's exit).
 * At the end it prints the number of sleeps made (ground truth for the number of blocks) and the wall time the
 * threads (or children) spent in block_gamma together, in seconds: "sleeps seconds". */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raw_sleep.h"

#define MAX_THREADS 64

static int sleeps, sleep_us;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void block_gamma(int n)
{
	for (int i = 0; i < n; i++)
		raw_sleep_us(sleep_us);
	__asm__ volatile("");
}

static void *thread_main(void *arg)
{
	double *took = arg, t0 = now();
	block_gamma(sleeps);
	*took = now() - t0;
	return NULL;
}

/* argv[2] children, at most `at_once` alive, each one sleep; each writes the time it took into a shared page. */
static int fork_mode(int at_once, int children)
{
	double *took = mmap(NULL, sizeof(double) * (size_t)children, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			    -1, 0);
	if (took == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	int alive = 0, made = 0;
	for (int i = 0; i < children || alive; i++) {
		if (i >= children || alive >= at_once) {
			int st;
			if (wait(&st) < 0) {
				perror("wait");
				return 1;
			}
			alive--;
			made += WIFEXITED(st) && WEXITSTATUS(st) == 0;
			if (i >= children)
				continue;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (!pid) {
			double t0 = now();
			block_gamma(1);
			took[i] = now() - t0;
			_exit(0);
		}
		alive++;
	}
	double sum = 0;
	for (int i = 0; i < children; i++)
		sum += took[i];
	printf("%d %.6f\n", made, sum);
	return 0;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 4;
	sleeps = argc > 2 ? atoi(argv[2]) : 400;
	sleep_us = argc > 3 ? atoi(argv[3]) : 2000;
	bool forks = argc > 4 && !strcmp(argv[4], "fork");
	if (threads < 1 || threads > MAX_THREADS || sleeps < 1 || sleep_us < 1 || (argc > 4 && !forks)) {
		fprintf(stderr, "usage: sleepers [THREADS (1-%d) [SLEEPS [MICROSECONDS [fork]]]]\n", MAX_THREADS);
		return 2;
	}
	if (getchar() == EOF)
		return 1;
	if (forks)
		return fork_mode(threads, sleeps);
	pthread_t tid[MAX_THREADS];
	double took[MAX_THREADS];
	for (int i = 0; i < threads; i++)
		if (pthread_create(&tid[i], NULL, thread_main, &took[i])) {
			perror("pthread_create");
			return 1;
		}
	double sum = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		sum += took[i];
	}
	printf("%d %.6f\n", threads * sleeps, sum);
	return 0;
}
