// SPDX-License-Identifier: BSD-2-Clause
/* blocker: a process whose system calls are known exactly, ground truth for the BPF tests.
 *
 * It blocks a known time in one specific syscall a known number of times, fails a known syscall with a known
 * errno a known number of times, and reports on stdout (one JSON object a line) what it did, with the duration
 * of every blocking call measured on CLOCK_MONOTONIC around the syscall (bpf_ktime_get_ns() is the same clock,
 * so the kernel-side duration is always <= the measured one).
 *
 * Its comm is its binary name (tests run it through symlinks with distinctive names, so that a comm: selector
 * matches at exec time) unless --comm sets another one with prctl(PR_SET_NAME).
 *
 *   blocker [--comm NAME] [--wait-go FILE|-] [--sleep-ms MS] [--count N] [--method nanosleep|ppoll]
 *           [--enoent K] [--eagain K] [--eintr K] [--threads T --thread-count N] [--fork [--child-count N]
 *           [--child-method M] [--child-hold]] [--as-pid PID] [--hold] [--exec-child -- PATH ARGS...]
 *
 *   --wait-go FILE   before any work, read one byte from FILE (a FIFO; "-" is stdin): the test decides when
 *                    the work starts (e.g. after loupe is up, or after loupe has classified this process)
 *   --count N        N calls of --method, each blocking --sleep-ms (default 50):
 *                      nanosleep: clock_nanosleep(CLOCK_MONOTONIC, 0, ...)   (syscall "clock_nanosleep")
 *                      ppoll:     ppoll(NULL, 0, timeout, NULL)             (syscall "ppoll")
 *   --enoent K       K x openat(AT_FDCWD, "/nonexistent-loupe-blocker/x") -> ENOENT  (syscall "openat")
 *   --eagain K       K x read() of an empty O_NONBLOCK pipe -> EAGAIN                 (syscall "read")
 *   --eintr K        K x ppoll(NULL, 0, 1 s) cut short after 10 ms by SIGALRM (setitimer, a handler without
 *                    SA_RESTART): ppoll returns EINTR to the program                   (syscall "ppoll")
 *   --threads T      T extra threads, each doing --thread-count blocking calls of --method, then exiting
 *                    before the main thread does its own work
 *   --fork           after the go signal, fork a child with a raw clone() syscall (glibc's fork() makes its
 *                    own syscalls in the child): the child's FIRST syscall is personality(0xffffffff) (a
 *                    syscall nothing else here makes), then --child-count calls of --child-method (default
 *                    ppoll, so they are told apart from the parent's), then it reports and exits
 *   --exec-child     with --fork: the child execs ARGS after "--" right after its personality() call;
 *                    with --as-pid: the child at PID execs ARGS at once
 *   --child-hold     with --fork: the child waits for EOF on stdin before it exits
 *   --as-pid PID     do all the work in a child created by clone3() with set_tid = PID (pid reuse tests;
 *                    needs CAP_SYS_ADMIN); exit 3 with {"error":"pid_in_use"} when PID is taken
 *   --hold           after the work, wait for EOF on stdin before exiting (the test checks live state)
 *
 * Output: one line per process, {"role":"main"|"child", "pid":P, "ppid":Q, "comm":"...", "child_pid":C,
 * "enoent":K, "eagain":K, "eintr":K, "work":{"syscall":"clock_nanosleep", "count":N, "sleep_ms":MS, "bad":B,
 * "durations_ns":[...]}, "thread_work":[...]}; an exec'd child prints its own "main" line first. Exit status 0 when every call did
 * what it should (a blocking call interrupted, or an error with another errno, gives exit 1). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CALLS 1000

enum method { M_NANOSLEEP, M_PPOLL };

struct opts {
	const char *comm, *wait_go;
	long sleep_ms;
	int count, enoent, eagain, eintr, threads, thread_count, child_count;
	enum method method, child_method, thread_method;
	int fork, child_hold, hold;
	long as_pid;
	char **exec_argv;
};

struct work {
	enum method method;
	int count;
	long sleep_ms;
	uint64_t dur[MAX_CALLS];
	int bad; /* calls that did not block as asked */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall */
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *method_name(enum method m)
{
	return m == M_PPOLL ? "ppoll" : "nanosleep";
}

static int parse_method(const char *s, enum method *m)
{
	if (!strcmp(s, "nanosleep"))
		*m = M_NANOSLEEP;
	else if (!strcmp(s, "ppoll"))
		*m = M_PPOLL;
	else
		return -1;
	return 0;
}

/* One blocking call of exactly sleep_ms, by the raw syscall (so the syscall name is certain). */
static long block_once(enum method m, long sleep_ms)
{
	struct timespec ts = {.tv_sec = sleep_ms / 1000, .tv_nsec = (sleep_ms % 1000) * 1000000L};
	if (m == M_PPOLL)
		return syscall(SYS_ppoll, NULL, 0, &ts, NULL, 8);
	return syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL);
}

static void do_work(struct work *w)
{
	for (int i = 0; i < w->count && i < MAX_CALLS; i++) {
		uint64_t t0 = mono_ns();
		long rc = block_once(w->method, w->sleep_ms);
		w->dur[i] = mono_ns() - t0;
		if (rc != 0 || w->dur[i] < (uint64_t)w->sleep_ms * 1000000ull)
			w->bad++;
	}
}

static void *thread_main(void *arg)
{
	do_work(arg);
	return NULL;
}

/* K failing openat() calls; returns how many failed with ENOENT. */
static int do_enoent(int k)
{
	int n = 0;
	for (int i = 0; i < k; i++) {
		long fd = syscall(SYS_openat, AT_FDCWD, "/nonexistent-loupe-blocker/x", O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			n++;
		else if (fd >= 0)
			close((int)fd);
	}
	return n;
}

/* K reads of an empty non-blocking pipe; returns how many failed with EAGAIN. */
static int do_eagain(int k)
{
	int p[2], n = 0;
	if (!k)
		return 0;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
		return -1;
	char c;
	for (int i = 0; i < k; i++) {
		long rc = syscall(SYS_read, p[0], &c, 1);
		if (rc < 0 && errno == EAGAIN)
			n++;
	}
	close(p[0]);
	close(p[1]);
	return n;
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* K ppoll() calls interrupted by a signal handler; returns how many failed with EINTR. */
static int do_eintr(int k)
{
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	if (!k || sigaction(SIGALRM, &sa, NULL))
		return 0;
	int n = 0;
	for (int i = 0; i < k; i++) {
		struct itimerval it = {.it_value = {.tv_sec = 0, .tv_usec = 10000}};
		struct timespec ts = {.tv_sec = 1};
		setitimer(ITIMER_REAL, &it, NULL);
		long rc = syscall(SYS_ppoll, NULL, 0, &ts, NULL, 8);
		if (rc < 0 && errno == EINTR)
			n++;
	}
	return n;
}

static int wait_go(const char *path)
{
	int fd = 0;
	if (strcmp(path, "-")) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
	}
	char c;
	ssize_t n;
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (fd)
		close(fd);
	return n == 1 ? 0 : -1;
}

static void wait_eof(void)
{
	char buf[64];
	ssize_t n;
	do
		n = read(0, buf, sizeof(buf));
	while (n > 0 || (n < 0 && errno == EINTR));
}

static void print_work(const char *key, const struct work *w)
{
	printf("\"%s\":{\"method\":\"%s\",\"syscall\":\"%s\",\"count\":%d,\"sleep_ms\":%ld,\"bad\":%d,\"durations_ns\":[",
	       key, method_name(w->method), w->method == M_PPOLL ? "ppoll" : "clock_nanosleep", w->count, w->sleep_ms,
	       w->bad);
	for (int i = 0; i < w->count && i < MAX_CALLS; i++)
		printf("%s%llu", i ? "," : "", (unsigned long long)w->dur[i]);
	printf("]}");
}

static void comm_of_self(char *buf, size_t n)
{
	buf[0] = '\0';
	prctl(PR_GET_NAME, buf);
	buf[n - 1] = '\0';
}

/* The child of --fork: personality() first, then its own blocking calls. */
static void child_main(const struct opts *o)
{
	long pers = syscall(SYS_personality, 0xffffffffUL); /* first syscall after clone: query only */
	if (o->exec_argv) {
		execv(o->exec_argv[0], o->exec_argv);
		printf("{\"role\":\"child\",\"error\":\"exec failed: %s\"}\n", strerror(errno));
		fflush(stdout);
		_exit(1);
	}
	static struct work w;
	w.method = o->child_method;
	w.count = o->child_count;
	w.sleep_ms = o->sleep_ms;
	do_work(&w);
	char comm[16];
	comm_of_self(comm, sizeof(comm));
	printf("{\"role\":\"child\",\"pid\":%d,\"ppid\":%d,\"comm\":\"%s\",\"personality_ok\":%s,", getpid(), getppid(),
	       comm, pers >= 0 ? "true" : "false");
	print_work("work", &w);
	printf("}\n");
	fflush(stdout);
	if (o->child_hold)
		wait_eof();
	_exit(w.bad ? 1 : 0);
}

static int run(const struct opts *o)
{
	static struct work main_work, thread_work[64];
	pthread_t tids[64];
	int nthreads = o->threads > 64 ? 64 : o->threads;
	pid_t child = 0;

	fflush(stdout); /* nothing buffered may be duplicated by clone() */
	if (o->fork) {
		child = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL, NULL, 0UL);
		if (child < 0) {
			printf("{\"role\":\"main\",\"error\":\"clone failed: %s\"}\n", strerror(errno));
			return 1;
		}
		if (child == 0)
			child_main(o); /* does not return */
	}
	for (int i = 0; i < nthreads; i++) {
		thread_work[i].method = o->thread_method;
		thread_work[i].count = o->thread_count;
		thread_work[i].sleep_ms = o->sleep_ms;
		if (pthread_create(&tids[i], NULL, thread_main, &thread_work[i])) {
			nthreads = i;
			break;
		}
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(tids[i], NULL);

	main_work.method = o->method;
	main_work.count = o->count;
	main_work.sleep_ms = o->sleep_ms;
	do_work(&main_work);
	int enoent = do_enoent(o->enoent);
	int eagain = do_eagain(o->eagain);
	int eintr = do_eintr(o->eintr);

	int child_status = 0;
	if (child > 0) {
		while (waitpid(child, &child_status, 0) < 0 && errno == EINTR)
			;
	}
	char comm[16];
	comm_of_self(comm, sizeof(comm));
	printf("{\"role\":\"main\",\"pid\":%d,\"ppid\":%d,\"comm\":\"%s\",\"child_pid\":%d,\"child_exit\":%d,"
	       "\"threads\":%d,\"enoent\":%d,\"eagain\":%d,\"eintr\":%d,",
	       getpid(), getppid(), comm, (int)child, child > 0 && WIFEXITED(child_status) ? WEXITSTATUS(child_status) : -1,
	       nthreads, enoent, eagain, eintr);
	print_work("work", &main_work);
	printf(",\"thread_work\":[");
	for (int i = 0; i < nthreads; i++) {
		printf("%s{", i ? "," : "");
		print_work("work", &thread_work[i]);
		printf("}");
	}
	printf("]}\n");
	fflush(stdout);
	int bad = main_work.bad || enoent != o->enoent || eagain != o->eagain || eintr != o->eintr;
	for (int i = 0; i < nthreads; i++)
		bad |= thread_work[i].bad;
	if (child > 0 && !(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0))
		bad = 1;
	if (o->hold)
		wait_eof();
	return bad ? 1 : 0;
}

/* Run the work in a child whose pid is exactly o->as_pid (clone3 set_tid). */
static int run_as_pid(const struct opts *o)
{
	pid_t want = (pid_t)o->as_pid;
	struct clone_args args = {.exit_signal = SIGCHLD, .set_tid = (uintptr_t)&want, .set_tid_size = 1};
	fflush(stdout);
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		printf("{\"role\":\"main\",\"error\":\"%s\",\"errno\":%d}\n", errno == EEXIST ? "pid_in_use" : strerror(errno),
		       errno);
		fflush(stdout);
		return 3;
	}
	if (pid == 0) {
		if (o->exec_argv) { /* a new image at the reused pid: loupe classifies it at exec */
			execv(o->exec_argv[0], o->exec_argv);
			printf("{\"role\":\"main\",\"error\":\"exec failed: %s\"}\n", strerror(errno));
			fflush(stdout);
			_exit(1);
		}
		struct opts o2 = *o;
		o2.as_pid = 0;
		exit(run(&o2));
	}
	int status = 0;
	while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static void usage(void)
{
	fputs("usage: blocker [--comm NAME] [--wait-go FILE|-] [--sleep-ms MS] [--count N] [--method nanosleep|ppoll]\n"
	      "               [--enoent K] [--eagain K] [--eintr K] [--threads T] [--thread-count N] [--thread-method M]\n"
	      "               [--fork] [--child-count N] [--child-method M] [--child-hold] [--as-pid PID] [--hold]\n"
	      "               [--exec-child -- PATH ARGS...]\n",
	      stderr);
	exit(2);
}

static long num(const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < lo || v > hi) {
		fprintf(stderr, "blocker: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct opts o = {.sleep_ms = 50, .method = M_NANOSLEEP, .child_method = M_PPOLL, .thread_method = M_PPOLL};
	int want_exec = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                                                        \
	do {                                                                                                           \
		if (!v)                                                                                                \
			usage();                                                                                       \
		i++;                                                                                                   \
	} while (0)
		if (!strcmp(a, "--comm")) { NEEDV(); o.comm = v; }
		else if (!strcmp(a, "--wait-go")) { NEEDV(); o.wait_go = v; }
		else if (!strcmp(a, "--sleep-ms")) { NEEDV(); o.sleep_ms = num(v, 1, 10000); }
		else if (!strcmp(a, "--count")) { NEEDV(); o.count = (int)num(v, 0, MAX_CALLS); }
		else if (!strcmp(a, "--method")) { NEEDV(); if (parse_method(v, &o.method)) usage(); }
		else if (!strcmp(a, "--enoent")) { NEEDV(); o.enoent = (int)num(v, 0, 1000000); }
		else if (!strcmp(a, "--eagain")) { NEEDV(); o.eagain = (int)num(v, 0, 1000000); }
		else if (!strcmp(a, "--eintr")) { NEEDV(); o.eintr = (int)num(v, 0, 1000); }
		else if (!strcmp(a, "--threads")) { NEEDV(); o.threads = (int)num(v, 0, 64); }
		else if (!strcmp(a, "--thread-count")) { NEEDV(); o.thread_count = (int)num(v, 0, MAX_CALLS); }
		else if (!strcmp(a, "--thread-method")) { NEEDV(); if (parse_method(v, &o.thread_method)) usage(); }
		else if (!strcmp(a, "--fork")) o.fork = 1;
		else if (!strcmp(a, "--child-count")) { NEEDV(); o.child_count = (int)num(v, 0, MAX_CALLS); }
		else if (!strcmp(a, "--child-method")) { NEEDV(); if (parse_method(v, &o.child_method)) usage(); }
		else if (!strcmp(a, "--child-hold")) o.child_hold = 1;
		else if (!strcmp(a, "--as-pid")) { NEEDV(); o.as_pid = num(v, 2, 4194304); }
		else if (!strcmp(a, "--hold")) o.hold = 1;
		else if (!strcmp(a, "--exec-child")) want_exec = 1;
		else if (!strcmp(a, "--")) {
			if (!want_exec || i + 1 >= argc)
				usage();
			o.exec_argv = &argv[i + 1];
			break;
		} else usage();
#undef NEEDV
	}
	if (want_exec && (!o.exec_argv || !(o.fork || o.as_pid)))
		usage();
	if (o.comm)
		prctl(PR_SET_NAME, o.comm);
	if (o.wait_go && wait_go(o.wait_go)) {
		printf("{\"role\":\"main\",\"error\":\"no go signal\"}\n");
		return 1;
	}
	return o.as_pid ? run_as_pid(&o) : run(&o);
}
