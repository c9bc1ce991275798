// SPDX-License-Identifier: BSD-2-Clause
/* loupe-bench-mix: make many distinct syscalls, so that a loupe targeting this process exports many series.
 * scripts/bench.sh runs several of these as separate services to time /metrics at about 10k samples, the scale
 * DESIGN.md section 6 asks scrape time for.
 *
 *   loupe-bench-mix [-i INTERVAL_MS] [-d SECONDS]
 *     every INTERVAL_MS (default 20) make each syscall of the list once; stop after SECONDS (default 600) or on
 *     SIGTERM/SIGINT
 *
 * The list holds only calls that change nothing: queries of this process, and calls on invalid file
 * descriptors or missing paths that fail at once (EBADF, ENOENT, EFAULT), which also fills the error counters. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOPATH "/nonexistent/loupe-bench"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void mix_once(void)
{
	static char buf[4096]; /* larger than any struct these calls fill (utsname: 390 bytes) */
	struct timespec ts;
	long bad = -1;

	/* Queries: succeed, no side effects. */
	syscall(SYS_getpid);
	syscall(SYS_getppid);
	syscall(SYS_gettid);
	syscall(SYS_getuid);
	syscall(SYS_geteuid);
	syscall(SYS_getgid);
	syscall(SYS_getegid);
	syscall(SYS_getpgrp);
	syscall(SYS_getsid, 0);
	syscall(SYS_getpgid, 0);
	syscall(SYS_getpriority, 0, 0);
	syscall(SYS_sched_yield);
	syscall(SYS_sched_getscheduler, 0);
	syscall(SYS_uname, buf);
	syscall(SYS_times, buf);
	syscall(SYS_getrusage, 0, buf);
	syscall(SYS_getcwd, buf, sizeof(buf));
	syscall(SYS_getrlimit, 0, buf);
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
	syscall(SYS_clock_getres, CLOCK_MONOTONIC, &ts);
	syscall(SYS_gettimeofday, buf, NULL);
	syscall(SYS_time, NULL);
	syscall(SYS_getcpu, buf, NULL, NULL);
	syscall(SYS_sched_getaffinity, 0, 128, buf);
	syscall(SYS_getgroups, 0, NULL);
	syscall(SYS_getresuid, buf, buf + 8, buf + 16);
	syscall(SYS_getresgid, buf, buf + 8, buf + 16);
	syscall(SYS_getitimer, 0, buf);
	syscall(SYS_sysinfo, buf);
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, buf, 8);
	syscall(SYS_sigaltstack, NULL, buf);
	/* Fail at once on a bad file descriptor (EBADF). */
	syscall(SYS_read, bad, buf, 1);
	syscall(SYS_write, bad, buf, 1);
	syscall(SYS_close, bad);
	syscall(SYS_fstat, bad, buf);
	syscall(SYS_lseek, bad, 0, SEEK_SET);
	syscall(SYS_pread64, bad, buf, 1, 0);
	syscall(SYS_pwrite64, bad, buf, 1, 0);
	syscall(SYS_dup, bad);
	syscall(SYS_fcntl, bad, 1);
	syscall(SYS_ioctl, bad, 0);
	syscall(SYS_fsync, bad);
	syscall(SYS_fdatasync, bad);
	syscall(SYS_fchdir, bad);
	syscall(SYS_getdents64, bad, buf, sizeof(buf));
	syscall(SYS_fstatfs, bad, buf);
	/* Fail at once on a missing path (ENOENT). */
	syscall(SYS_access, NOPATH, 0);
	syscall(SYS_stat, NOPATH, buf);
	syscall(SYS_lstat, NOPATH, buf);
	syscall(SYS_readlink, NOPATH, buf, sizeof(buf));
	syscall(SYS_statfs, NOPATH, buf);
	syscall(SYS_chdir, NOPATH);
}

int main(int argc, char **argv)
{
	long interval_ms = 20, duration_s = 600;
	int c;
	while ((c = getopt(argc, argv, "i:d:h")) != -1) {
		switch (c) {
		case 'i': interval_ms = strtol(optarg, NULL, 10); break;
		case 'd': duration_s = strtol(optarg, NULL, 10); break;
		case 'h': puts("usage: loupe-bench-mix [-i INTERVAL_MS] [-d SECONDS]"); return 0;
		default: return 2;
		}
	}
	if (interval_ms < 1 || duration_s < 1) {
		fprintf(stderr, "loupe-bench-mix: -i and -d must be positive\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	struct timespec pause = {.tv_sec = interval_ms / 1000, .tv_nsec = (interval_ms % 1000) * 1000000L};
	time_t end = time(NULL) + duration_s;
	while (!stop && time(NULL) < end) {
		mix_once();
		nanosleep(&pause, NULL);
	}
	return 0;
}
