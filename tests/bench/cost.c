// SPDX-License-Identifier: BSD-2-Clause
/* loupe-bench-cost: the fixed micro-workloads of scripts/bench-cost.sh, each timed per operation.
 *
 *   loupe-bench-cost syscall|sock|http|pg [-n OPS] [-w WARMUP_MS] [-c CPU]
 *     syscall  OPS getuid() calls in a loop (a syscall loupe times by default, unlike getppid; not a vDSO call)
 *     sock     OPS one-byte write() and read() pairs over a Unix stream socketpair in this one process: two
 *              syscalls and two runs of the socket tracepoints payload capture hooks (sock_send_length,
 *              sock_recv_length) per operation, and no network stack
 *     http     OPS HTTP/1.1 request/response pairs on one keep-alive loopback TCP connection between this
 *              process (the client) and a forked server: "GET /items/N" (N varies) and a 200 with a 2-byte body
 *     pg       OPS PostgreSQL simple-query/response pairs between this process and a forked server speaking
 *              the v3 wire protocol: a startup packet and AuthenticationOk + ReadyForQuery once, then per
 *              operation Query "SELECT v FROM kv WHERE k = N" (N varies: one fingerprint, many literals) and
 *              RowDescription, DataRow, CommandComplete, ReadyForQuery
 *     -n  operations timed (default 3000000 syscall, 1000000 sock, 30000 http and pg: about a second each here)
 *     -w  milliseconds of the same operations first, not timed (default 500): gives loupe time to see the
 *         processes (its /proc scan, unwinding tables) so that the timed part is its steady state
 *     -c  the CPU the workload runs on, both processes of a pair included (default: the last this process may use;
 *         -1: not pinned). A pair on one CPU hands over without cross-CPU wakeups, whose cost depends on where the
 *         scheduler happens to put the two: pinned, the figure is stable from run to run, and loupe's reader and
 *         the kernel's other work run on the other CPUs (they still count in host_cpu)
 *
 * The comm is the executable's name: the benchmark runs it through symlinks named lbc-t (targeted) and lbc-u
 * (not targeted), and the forked server inherits it. Prints one JSON line:
 *   {"workload":W,"ops":N,"warmup_ops":M,"wall_ns_per_op":..,"proc_cpu_ns_per_op":..,"host_cpu_ns_per_op":..,
 *    "host_steal_ns_per_op":..}
 * proc_cpu: CPU time of the workload's processes (client and server, user + system, from getrusage);
 * host_cpu: the whole host's busy time from /proc/stat over the timed part (user, nice, system, irq, softirq;
 * idle, iowait and steal excluded), which includes loupe's own work and the kernel's on behalf of either. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "loupe-bench-cost: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Busy and steal jiffies of the whole host (the "cpu" line of /proc/stat). */
static void host_jiffies(uint64_t *busy, uint64_t *steal)
{
	unsigned long long u, n, s, idle, iow, irq, sirq, st;
	FILE *f = fopen("/proc/stat", "r");
	if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &s, &idle, &iow, &irq, &sirq, &st) != 8)
		die("/proc/stat");
	fclose(f);
	*busy = u + n + s + irq + sirq;
	*steal = st;
}

static uint64_t rusage_ns(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write");
		p += w;
		n -= (size_t)w;
	}
}

/* Read exactly n bytes; returns 0 at EOF before the first byte. */
static int read_all(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 && got == 0)
			return 0;
		if (r <= 0)
			die("read");
		got += (size_t)r;
	}
	return 1;
}

/* ------------------------------------------------------------------------------------------- HTTP --- */

static const char http_resp[] = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";

/* One request: read until the blank line (requests are small and come in one piece, but do not rely on it). */
static int http_serve_one(int fd)
{
	char buf[1024];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		len += (size_t)r;
		buf[len] = 0;
		if (strstr(buf, "\r\n\r\n"))
			break;
		if (len >= sizeof(buf) - 1)
			die("request too long");
	}
	write_all(fd, http_resp, sizeof(http_resp) - 1);
	return 1;
}

static void http_op(int fd, uint64_t i)
{
	char req[128], resp[sizeof(http_resp)];
	int n = snprintf(req, sizeof(req), "GET /items/%llu HTTP/1.1\r\nhost: bench\r\n\r\n", (unsigned long long)(i % 1000));
	write_all(fd, req, (size_t)n);
	if (!read_all(fd, resp, sizeof(http_resp) - 1))
		die("server closed");
}

/* --------------------------------------------------------------------------------------- pgwire --- */

static void put32(char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

/* A message: type byte, then length (itself included) and body. */
static size_t pg_msg(char *out, char type, const void *body, size_t n)
{
	out[0] = type;
	put32(out + 1, (uint32_t)(n + 4));
	memcpy(out + 5, body, n);
	return n + 5;
}

static int pg_serve(int fd)
{
	char buf[4096], out[512];
	ssize_t r = read(fd, buf, sizeof(buf)); /* the startup packet, whole: the client sends it in one write */
	if (r < 8 || (uint32_t)r != get32(buf))
		die("startup packet");
	size_t n = 0;
	char auth[4] = {0};
	n += pg_msg(out + n, 'R', auth, 4);
	n += pg_msg(out + n, 'Z', "I", 1);
	write_all(fd, out, n);
	/* The reply to every query, built once. */
	char rd[64], dr[16];
	size_t rn = 0;
	rd[rn++] = 0, rd[rn++] = 1; /* one field */
	memcpy(rd + rn, "v", 2), rn += 2;
	memset(rd + rn, 0, 18), rn += 18; /* table oid, column, type oid (set below), size, modifier, format */
	put32(rd + 2 + 2 + 6, 23);	  /* int4 */
	size_t dn = 0;
	dr[dn++] = 0, dr[dn++] = 1;
	put32(dr + dn, 1), dn += 4;
	dr[dn++] = '1';
	char reply[256];
	size_t m = 0;
	m += pg_msg(reply + m, 'T', rd, rn);
	m += pg_msg(reply + m, 'D', dr, dn);
	m += pg_msg(reply + m, 'C', "SELECT 1", 9);
	m += pg_msg(reply + m, 'Z', "I", 1);
	/* Like a backend: read what is there into a buffer, answer every whole message in it. */
	size_t have = 0;
	for (;;) {
		r = read(fd, buf + have, sizeof(buf) - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 1;
		have += (size_t)r;
		size_t off = 0;
		while (have - off >= 5 && have - off >= 1 + (size_t)get32(buf + off + 1)) {
			if (buf[off] == 'X')
				return 1;
			off += 1 + get32(buf + off + 1);
			write_all(fd, reply, m);
		}
		memmove(buf, buf + off, have - off);
		have -= off;
		if (have == sizeof(buf))
			die("message too long");
	}
}

static size_t pg_reply_len; /* bytes of the server's reply to one query */

static void pg_startup(int fd)
{
	static const char params[] = "user\0bench\0database\0bench\0";
	char pkt[64];
	size_t n = 8 + sizeof(params); /* params end with the terminating empty string: the array's own NUL */
	put32(pkt, (uint32_t)n);
	put32(pkt + 4, 196608);
	memcpy(pkt + 8, params, sizeof(params));
	write_all(fd, pkt, n);
	char resp[9 + 6];
	if (!read_all(fd, resp, sizeof(resp)))
		die("server closed");
	pg_reply_len = (5 + 2 + 2 + 18) + (5 + 2 + 4 + 1) + (5 + 9) + (5 + 1);
}

static void pg_op(int fd, uint64_t i)
{
	char q[128], msg[160], resp[128];
	int n = snprintf(q, sizeof(q), "SELECT v FROM kv WHERE k = %llu", (unsigned long long)(i % 100000));
	size_t m = pg_msg(msg, 'Q', q, (size_t)n + 1);
	write_all(fd, msg, m);
	if (!read_all(fd, resp, pg_reply_len))
		die("server closed");
}

/* ------------------------------------------------------------------------------------------ sock --- */

static int sock_pair[2];

static void sock_op(int fd, uint64_t i)
{
	char b = (char)i;
	if (write(fd, &b, 1) != 1 || read(sock_pair[1], &b, 1) != 1)
		die("socketpair");
}

/* ---------------------------------------------------------------------------------------- driver --- */

/* A loopback TCP pair: the server is a forked child serving one connection. */
static int start_pair(int (*serve)(int), pid_t *child)
{
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &al))
		die("listen");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			die("accept");
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		close(ls);
		while (serve(fd) && serve != pg_serve)
			;
		_exit(0);
	}
	close(ls);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*child = pid;
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "syscall") && strcmp(argv[1], "sock") && strcmp(argv[1], "http") &&
			 strcmp(argv[1], "pg"))) {
		fprintf(stderr, "usage: loupe-bench-cost syscall|sock|http|pg [-n OPS] [-w WARMUP_MS] [-c CPU]\n");
		return 2;
	}
	const char *w = argv[1];
	long ops = !strcmp(w, "syscall") ? 3000000 : !strcmp(w, "sock") ? 1000000 : 30000, warm_ms = 500, cpu = -2;
	for (int i = 2; i + 1 < argc; i += 2) {
		char *end;
		long v = strtol(argv[i + 1], &end, 10);
		if (!strcmp(argv[i], "-c") && !*end && v >= -1) {
			cpu = v;
			continue;
		}
		if (*end || v < 1) {
			fprintf(stderr, "loupe-bench-cost: bad value '%s'\n", argv[i + 1]);
			return 2;
		}
		if (!strcmp(argv[i], "-n"))
			ops = v;
		else if (!strcmp(argv[i], "-w"))
			warm_ms = v;
		else {
			fprintf(stderr, "loupe-bench-cost: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	cpu_set_t set;
	if (cpu == -2 && !sched_getaffinity(0, sizeof(set), &set))
		for (int c = CPU_SETSIZE - 1; c >= 0; c--)
			if (CPU_ISSET(c, &set)) {
				cpu = c;
				break;
			}
	if (cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET((int)cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("sched_setaffinity");
	}
	int fd = -1;
	pid_t child = 0;
	void (*op)(int, uint64_t) = NULL;
	if (!strcmp(w, "http")) {
		fd = start_pair(http_serve_one, &child);
		op = http_op;
	} else if (!strcmp(w, "pg")) {
		fd = start_pair(pg_serve, &child);
		pg_startup(fd);
		op = pg_op;
	} else if (!strcmp(w, "sock")) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock_pair))
			die("socketpair");
		fd = sock_pair[0];
		op = sock_op;
	}
	uint64_t i = 0, warm_end = now_ns(CLOCK_MONOTONIC) + (uint64_t)warm_ms * 1000000;
	while (now_ns(CLOCK_MONOTONIC) < warm_end) {
		for (int k = 0; k < 100; k++, i++) {
			if (op)
				op(fd, i);
			else
				syscall(SYS_getuid);
		}
	}
	uint64_t warm_ops = i, busy0, steal0, busy1, steal1;
	uint64_t self0 = rusage_ns(RUSAGE_SELF);
	host_jiffies(&busy0, &steal0);
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	for (long k = 0; k < ops; k++, i++) {
		if (op)
			op(fd, i);
		else
			syscall(SYS_getuid);
	}
	uint64_t t1 = now_ns(CLOCK_MONOTONIC);
	host_jiffies(&busy1, &steal1);
	uint64_t self1 = rusage_ns(RUSAGE_SELF), child_ns = 0;
	if (child) {
		/* The server's CPU: all of it, warm-up included, scaled to the timed operations' share. */
		close(fd);
		int st;
		if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st))
			die("server");
		child_ns = (uint64_t)((double)rusage_ns(RUSAGE_CHILDREN) * (double)ops / (double)i);
	}
	double hz = (double)sysconf(_SC_CLK_TCK);
	printf("{\"workload\":\"%s\",\"cpu\":%ld,\"ops\":%ld,\"warmup_ops\":%llu,\"wall_ns_per_op\":%.1f,\"proc_cpu_ns_per_op\":%.1f,"
	       "\"host_cpu_ns_per_op\":%.1f,\"host_steal_ns_per_op\":%.1f}\n",
	       w, cpu, ops, (unsigned long long)warm_ops, (double)(t1 - t0) / (double)ops,
	       (double)(self1 - self0 + child_ns) / (double)ops, (double)(busy1 - busy0) * 1e9 / hz / (double)ops,
	       (double)(steal1 - steal0) * 1e9 / hz / (double)ops);
	return 0;
}
