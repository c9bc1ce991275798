// SPDX-License-Identifier: BSD-2-Clause
/* The PostgreSQL protocol parser's cost per transaction, alone (no BPF, no ring, no registry): the backend side of
 * a pgbench -S -M prepared connection, as loupe's capture hands it over (one call a request, one a response), fed
 * to pg_conn_feed() N times. Prints JSON: ns per transaction (the best of 5 runs) and the statements reported.
 *   loupe-bench-pgparse [-n N]
 * The stream per transaction: Bind (portal "", statement "P0_1", one text parameter) + Execute + Sync from the
 * client; BindComplete + DataRow (one int4) + CommandComplete "SELECT 1" + ReadyForQuery 'I' from the backend. It
 * begins with the startup packet and the Parse the first transaction sends. */
#include "parsers/pgwire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct msgbuf {
	uint8_t b[512];
	size_t n;
};

static void put(struct msgbuf *m, const void *p, size_t n)
{
	if (m->n + n > sizeof(m->b))
		abort();
	if (n)
		memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put32(struct msgbuf *m, uint32_t v)
{
	uint8_t b[4] = {v >> 24, v >> 16, v >> 8, v};
	put(m, b, 4);
}

static void put16(struct msgbuf *m, uint16_t v)
{
	uint8_t b[2] = {v >> 8, v};
	put(m, b, 2);
}

/* A typed message: type, length, body. */
static void msg(struct msgbuf *m, char type, const void *body, size_t n)
{
	put(m, &type, 1);
	put32(m, (uint32_t)n + 4);
	put(m, body, n);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned long queries;

static void on_event(void *ctx, const struct pg_event *ev)
{
	(void)ctx;
	if (ev->type == PG_EV_QUERY)
		queries++;
}

int main(int argc, char **argv)
{
	long n = 1000000;
	int o;
	while ((o = getopt(argc, argv, "n:")) != -1) {
		if (o != 'n' || (n = atol(optarg)) <= 0) {
			fprintf(stderr, "usage: loupe-bench-pgparse [-n TRANSACTIONS]\n");
			return 2;
		}
	}
	struct msgbuf startup = {0}, parse = {0}, req = {0}, resp = {0}, m = {0};
	/* StartupMessage: length, protocol 3.0, user, database. */
	static const char params[] = "user\0bench\0database\0bench\0";
	put32(&startup, 8 + sizeof(params));
	put32(&startup, PG_PROTOCOL_3_0);
	put(&startup, params, sizeof(params));
	static const char query[] = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
	m.n = 0;
	put(&m, "P0_1", 5);
	put(&m, query, sizeof(query));
	put16(&m, 0);
	msg(&parse, 'P', m.b, m.n);
	/* Bind: portal "", statement "P0_1", 0 parameter formats, 1 parameter "12345", 0 result formats. */
	m.n = 0;
	put(&m, "", 1);
	put(&m, "P0_1", 5);
	put16(&m, 0);
	put16(&m, 1);
	put32(&m, 5);
	put(&m, "12345", 5);
	put16(&m, 0);
	msg(&req, 'B', m.b, m.n);
	m.n = 0;
	put(&m, "", 1);
	put32(&m, 0);
	msg(&req, 'E', m.b, m.n);
	msg(&req, 'S', NULL, 0);
	msg(&resp, '2', NULL, 0);
	m.n = 0;
	put16(&m, 1);
	put32(&m, 4);
	put(&m, "4321", 4);
	msg(&resp, 'D', m.b, m.n);
	msg(&resp, 'C', "SELECT 1", 9);
	msg(&resp, 'Z', "I", 1);
	/* The first response also answers the Parse: ParseComplete, once. */
	struct msgbuf first = {0};
	msg(&first, '1', NULL, 0);
	put(&first, resp.b, resp.n);

	struct pg_sink sink = {.event = on_event};
	double best = 0;
	unsigned long got = 0;
	for (int run = 0; run < 5; run++) {
		struct pg_conn *c = calloc(1, sizeof(*c));
		if (!c)
			return 1;
		pg_conn_init(c, PG_ROLE_SERVER, 0);
		uint64_t ts = 1000;
		pg_conn_feed(c, FLOW_IN, startup.b, startup.n, startup.n, NULL, 0, ts++, &sink);
		static const uint8_t auth_ok[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0, 'Z', 0, 0, 0, 5, 'I'};
		pg_conn_feed(c, FLOW_OUT, auth_ok, sizeof(auth_ok), sizeof(auth_ok), NULL, 0, ts++, &sink);
		struct msgbuf r0 = parse;
		put(&r0, req.b, req.n);
		queries = 0;
		pg_conn_feed(c, FLOW_IN, r0.b, r0.n, r0.n, NULL, 0, ts++, &sink);
		pg_conn_feed(c, FLOW_OUT, first.b, first.n, first.n, NULL, 0, ts++, &sink);
		uint64_t t0 = now_ns();
		for (long i = 0; i < n; i++) {
			pg_conn_feed(c, FLOW_IN, req.b, req.n, req.n, NULL, 0, ts++, &sink);
			pg_conn_feed(c, FLOW_OUT, resp.b, resp.n, resp.n, NULL, 0, ts++, &sink);
		}
		double ns = (double)(now_ns() - t0) / (double)n;
		if (!run || ns < best)
			best = ns;
		got = queries;
		free(c);
	}
	printf("{\"transactions\":%ld,\"queries\":%lu,\"ns_per_transaction\":%.1f,\"request_bytes\":%zu,"
	       "\"response_bytes\":%zu}\n", n + 1, got, best, req.n, resp.n);
	return got == (unsigned long)n + 1 ? 0 : 1;
}
