// SPDX-License-Identifier: BSD-2-Clause
/* TCP collector: bpf/tcp.bpf.c -> connections opened/active/duration, connect latency and errors, bytes, RTT,
 * retransmits and resets per service, direction and peer class. Peers are abstracted here and only here:
 * the peer's service name when a local target owns the other end, else loopback, private or public. */
#include "collectors/export.h"
#include "core/loupe.h"
#include "lib/bpf_util.h"
#include "lib/log.h"
#include "tcp.h"
#include "tcp.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { PEER_LOOPBACK, PEER_PRIVATE, PEER_PUBLIC, PEER_SERVICE0 }; /* PEER_SERVICE0 + svc - 1: a local service */

#define CONN_SLOTS 65536 /* open addressing, power of two */

struct conn_slot {
	uint64_t sk; /* 0 = empty, 1 = deleted */
	uint8_t svc, dir, peer;
};

struct tcp {
	struct loupe *L;
	struct tcp_bpf *skel;
	struct ring_buffer *rb;
	uint8_t listen_svc[65536]; /* local port -> service listening on it */
	uint8_t client_svc[65536]; /* local port -> service with an outbound connection from it */
	struct conn_slot *conns;
	unsigned nconns;
	unsigned long conn_table_full;
	struct metric_family *opened, *active, *duration, *connect, *connect_err, *sent, *received, *srtt;
};

static const char *const drop_reasons[TCP_DROP_NR] = {
	[TCP_DROP_RINGBUF] = "ringbuf_full",
	[TCP_DROP_CONN_MAP_FULL] = "conn_map_full",
};

static const char *peer_name(const struct tcp *t, uint8_t peer)
{
	static const char *const classes[] = {"loopback", "private", "public"};
	return peer < PEER_SERVICE0 ? classes[peer] : target_rules__service(&t->L->opt->rules, peer - PEER_SERVICE0 + 1);
}

/* Address class (RFC 1918, RFC 6598, RFC 3927, RFC 4193, RFC 4291); never the address itself. */
static uint8_t addr_class(uint8_t family, const uint8_t *a)
{
	uint8_t v4[4];
	if (family == AF_INET6) {
		static const uint8_t loop6[16] = {[15] = 1};
		static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
		if (!memcmp(a, loop6, 16))
			return PEER_LOOPBACK;
		if (memcmp(a, mapped, 12)) {
			if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
				return PEER_PRIVATE;
			return PEER_PUBLIC;
		}
		memcpy(v4, a + 12, 4);
	} else {
		memcpy(v4, a, 4);
	}
	if (v4[0] == 127)
		return PEER_LOOPBACK;
	if (v4[0] == 10 || (v4[0] == 172 && (v4[1] & 0xf0) == 16) || (v4[0] == 192 && v4[1] == 168) ||
	    (v4[0] == 100 && (v4[1] & 0xc0) == 64) || (v4[0] == 169 && v4[1] == 254))
		return PEER_PRIVATE;
	return PEER_PUBLIC;
}

static uint8_t classify_peer(const struct tcp *t, const struct tcp_rec *r)
{
	uint8_t c = addr_class(r->family, r->raddr);
	if (c != PEER_LOOPBACK)
		return c;
	/* The other end is on this host: a target's listening port, or a target's outbound connection. */
	uint8_t svc = r->dir == TCP_DIR_OUTBOUND ? t->listen_svc[r->rport] : t->client_svc[r->rport];
	if (!svc && r->dir == TCP_DIR_OUTBOUND)
		svc = t->client_svc[r->rport];
	return svc ? (uint8_t)(PEER_SERVICE0 + svc - 1) : PEER_LOOPBACK;
}

static struct conn_slot *conn_find(struct tcp *t, uint64_t sk, bool insert)
{
	size_t i = (size_t)((sk >> 6) * 0x9E3779B97F4A7C15ull) & (CONN_SLOTS - 1);
	struct conn_slot *tomb = NULL;
	for (size_t n = 0; n < CONN_SLOTS; n++, i = (i + 1) & (CONN_SLOTS - 1)) {
		struct conn_slot *s = &t->conns[i];
		if (s->sk == sk)
			return s;
		if (s->sk == 1 && !tomb)
			tomb = s;
		if (s->sk == 0) {
			if (!insert)
				return NULL;
			return tomb ? tomb : s;
		}
	}
	return insert ? tomb : NULL;
}

static const double duration_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
static const double latency_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
					0.01,	 0.025,	 0.05,	  0.1,	  0.25,	 0.5,	 1};

/* An established connection: remembered (for its close) and counted. */
static void on_open(struct tcp *t, const struct tcp_rec *r, const char *svc, const char *dir)
{
	uint8_t peer = classify_peer(t, r);
	struct conn_slot *s = conn_find(t, r->sk, true);
	if (!s) {
		t->conn_table_full++;
		return;
	}
	if (s->sk <= 1)
		t->nconns++;
	*s = (struct conn_slot){.sk = r->sk, .svc = (uint8_t)r->service, .dir = r->dir, .peer = peer};
	if (r->dir == TCP_DIR_OUTBOUND)
		t->client_svc[r->lport] = (uint8_t)r->service;
	const char *v[] = {svc, dir, peer_name(t, peer)};
	family__add(t->opened, v, 1);
	family__add(t->active, v, 1);
	if (r->dir == TCP_DIR_OUTBOUND) {
		const char *cv[] = {svc, peer_name(t, peer)};
		family__observe(t->connect, cv, ns_to_seconds(r->connect_ns));
	}
}

/* A closed connection: forgotten, and its lifetime, bytes and RTT observed under the peer it opened with. */
static void on_close(struct tcp *t, const struct tcp_rec *r, const char *svc, const char *dir)
{
	struct conn_slot *s = conn_find(t, r->sk, false);
	uint8_t peer = s ? s->peer : classify_peer(t, r);
	const char *v[] = {svc, dir, peer_name(t, peer)};
	if (s) {
		family__add(t->active, v, -1);
		s->sk = 1;
		t->nconns--;
	}
	if (r->dir == TCP_DIR_OUTBOUND && t->client_svc[r->lport] == r->service)
		t->client_svc[r->lport] = 0;
	family__observe(t->duration, v, ns_to_seconds(r->duration_ns));
	family__add(t->sent, v, (double)r->bytes_sent);
	family__add(t->received, v, (double)r->bytes_received);
	family__observe(t->srtt, v, ns_to_seconds(r->srtt_us * NSEC_PER_USEC));
}

static int on_record(void *ctx, void *data, size_t len)
{
	struct tcp *t = ctx;
	const struct tcp_rec *r = data;
	if (len < sizeof(*r) || !r->service || r->service > (unsigned)t->L->opt->rules.nservices)
		return 0;
	const char *svc = target_rules__service(&t->L->opt->rules, (int)r->service);
	const char *dir = r->dir == TCP_DIR_INBOUND ? "inbound" : "outbound";
	switch (r->type) {
	case REC_TCP_LISTEN:
		t->listen_svc[r->lport] = (uint8_t)r->service;
		break;
	case REC_TCP_OPEN:
		on_open(t, r, svc, dir);
		break;
	case REC_TCP_CONNECT_FAIL: {
		const char *cv[] = {svc, peer_name(t, classify_peer(t, r))};
		family__add(t->connect_err, cv, 1);
		break;
	}
	case REC_TCP_CLOSE:
		on_close(t, r, svc, dir);
		break;
	}
	return 0;
}

struct target_sock {
	unsigned long ino;
	uint8_t svc;
};

/* Append the socket inodes among process pid's open fds to *socks, as sockets of service svc. A full array (no
 * memory to grow it) ends the walk early. */
static void add_process_sockets(__u32 pid, uint8_t svc, struct target_sock **socks, size_t *n, size_t *cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/fd", pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	for (struct dirent *de; (de = readdir(d));) {
		char target[64];
		ssize_t l = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
		if (l <= 0)
			continue;
		target[l] = '\0';
		unsigned long ino;
		if (sscanf(target, "socket:[%lu]", &ino) != 1)
			continue;
		if (*n == *cap) {
			void *nv = realloc(*socks, *cap * 2 * sizeof(**socks));
			if (!nv)
				break;
			*socks = nv;
			*cap *= 2;
		}
		(*socks)[*n] = (struct target_sock){.ino = ino, .svc = svc};
		(*n)++;
	}
	closedir(d);
}

/* Socket inode -> service, from the open fds of every process in target_procs; NULL without memory. */
static struct target_sock *target_sockets(int procs_fd, size_t *n)
{
	size_t cap = 1024;
	struct target_sock *socks = malloc(cap * sizeof(*socks));
	__u32 key, next, *prev = NULL;
	struct target_info info;
	*n = 0;
	while (socks && !bpf_map_get_next_key(procs_fd, prev, &next)) {
		key = next;
		prev = &key;
		if (!bpf_map_lookup_elem(procs_fd, &next, &info))
			add_process_sockets(next, (uint8_t)info.service, &socks, n, &cap);
	}
	return socks;
}

/* The LISTEN sockets of one /proc/net/tcp{,6} table that are target sockets: their ports go into tcp_listeners
 * (and listen_svc). Returns how many. */
static unsigned seed_from_table(struct tcp *t, const char *table, const struct target_sock *socks, size_t n)
{
	FILE *fp = fopen(table, "re");
	if (!fp)
		return 0;
	unsigned seeded = 0;
	char line[512];
	while (fgets(line, sizeof(line), fp)) {
		char local[64];
		unsigned state, port;
		unsigned long ino;
		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*u %*u %lu", local, &state, &ino) != 3 ||
		    state != 0x0A /* TCP_LISTEN */)
			continue;
		char *colon = strrchr(local, ':');
		if (!colon || sscanf(colon + 1, "%x", &port) != 1 || port > 65535)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (socks[i].ino != ino)
				continue;
			__u16 p = (__u16)port;
			__u32 svc = socks[i].svc;
			bpf_map_update_elem(bpf_map__fd(t->skel->maps.tcp_listeners), &p, &svc, BPF_ANY);
			t->listen_svc[p] = (uint8_t)svc;
			seeded++;
			break;
		}
	}
	fclose(fp);
	return seeded;
}

/* Ports that targets already listen on when loupe starts: /proc/net/tcp{,6} LISTEN sockets whose inode is an
 * open fd of a target process. */
static void seed_listeners(struct tcp *t)
{
	struct bpf_map *m = NULL;
	/* target_procs lives in the targets object; find it through the shared objects list */
	for (int i = 0; i < t->L->nobjects && !m; i++)
		m = bpf_object__find_map_by_name(t->L->objects[i], "target_procs");
	if (!m)
		return;
	size_t n;
	struct target_sock *socks = target_sockets(bpf_map__fd(m), &n);
	unsigned seeded = 0;
	static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	for (size_t f = 0; socks && f < ARRAY_SIZE(tables); f++)
		seeded += seed_from_table(t, tables[f], socks, n);
	free(socks);
	log_info("tcp_listeners", "%u listening port(s) of running targets found", seeded);
}

/* The families the ring-buffer records update, declared once at open (event families: never reset). */
static int declare_families(struct tcp *t, struct registry *reg)
{
	static const char *const l3[] = {"service_name", "direction", "peer", NULL};
	static const char *const l2[] = {"service_name", "peer", NULL};
	t->opened = registry__family(reg, "loupe_tcp_connections_total",
				     "TCP connections of target services that reached ESTABLISHED.", METRIC_COUNTER, l3, 0, 0);
	t->active = registry__family(reg, "loupe_tcp_connections_active",
				     "Established TCP connections of target services opened since loupe started.",
				     METRIC_GAUGE, l3, 0, 0);
	t->duration = registry__family(reg, "loupe_tcp_connection_duration_seconds",
				       "Lifetime of closed TCP connections, from ESTABLISHED to CLOSE.", METRIC_HISTOGRAM, l3,
				       0, 0);
	t->connect = registry__family(reg, "loupe_tcp_connect_duration_seconds",
				      "Outbound connect latency, from SYN sent to ESTABLISHED.", METRIC_HISTOGRAM, l2, 0, 0);
	t->connect_err = registry__family(reg, "loupe_tcp_connect_errors_total",
					  "Outbound connects that closed before ESTABLISHED (refused, reset, timed out).",
					  METRIC_COUNTER, l2, 0, 0);
	t->sent = registry__family(reg, "loupe_tcp_sent_bytes_total",
				   "Data bytes sent (retransmissions counted once), counted when the connection closes.",
				   METRIC_COUNTER, l3, 0, 0);
	t->received = registry__family(reg, "loupe_tcp_received_bytes_total",
				       "Data bytes received, counted when the connection closes.", METRIC_COUNTER, l3, 0, 0);
	t->srtt = registry__family(reg, "loupe_tcp_srtt_seconds", "Smoothed round-trip time of connections at close.",
				   METRIC_HISTOGRAM, l3, 0, 0);
	if (!t->opened || !t->active || !t->duration || !t->connect || !t->connect_err || !t->sent || !t->received ||
	    !t->srtt)
		return -ENOMEM;
	int err;
	if ((err = family__set_buckets(t->duration, duration_bounds, ARRAY_SIZE(duration_bounds))) ||
	    (err = family__set_buckets(t->connect, latency_bounds, ARRAY_SIZE(latency_bounds))) ||
	    (err = family__set_buckets(t->srtt, latency_bounds, ARRAY_SIZE(latency_bounds))))
		return err;
	return 0;
}

static int tcp_open(struct loupe *L, void **priv)
{
	struct tcp *t = calloc(1, sizeof(*t));
	const char *hook;
	int err;
	if (!t)
		return -ENOMEM;
	t->L = L;
	t->conns = calloc(CONN_SLOTS, sizeof(*t->conns));
	if (!t->conns) {
		err = -ENOMEM;
		goto fail;
	}
	if ((err = declare_families(t, L->reg)))
		goto fail;
	t->skel = tcp_bpf__open();
	if (!t->skel) {
		err = -errno;
		goto fail;
	}
	if ((err = bpf_map__set_max_entries(t->skel->maps.target_svc, L->pid_max)) ||
	    (err = bpf_map__reuse_fd(t->skel->maps.target_svc, L->target_svc_fd)) ||
	    (err = loupe__select_tp_flavour(L, t->skel->obj, &hook)) || (err = tcp_bpf__load(t->skel)))
		goto fail;
	loupe__add_object(L, t->skel->obj);
	*priv = t;
	return 0;
fail:
	tcp_bpf__destroy(t->skel);
	free(t->conns);
	free(t);
	return err;
}

static int tcp_attach(void *priv)
{
	struct tcp *t = priv;
	int err = tcp_bpf__attach(t->skel);
	if (err)
		return err;
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.tcp_events), on_record, t, NULL);
	if (!t->rb)
		return -errno;
	seed_listeners(t);
	return 0;
}

static int tcp_poll(void *priv)
{
	struct tcp *t = priv;
	int n = ring_buffer__consume(t->rb);
	return n < 0 ? n : 0;
}

static int tcp_poll_fd(void *priv)
{
	struct tcp *t = priv;
	return t->rb ? ring_buffer__epoll_fd(t->rb) : -1;
}

static int tcp_collect(void *priv, struct registry *reg)
{
	struct tcp *t = priv;
	static const struct counter_def counters[TCP_CNT_NR] = {
		[TCP_CNT_RETRANSMITS] = {"loupe_tcp_retransmits_total", "TCP segments retransmitted on target connections."},
		[TCP_CNT_RESETS_SENT] = {"loupe_tcp_resets_sent_total", "TCP resets sent on target connections."},
		[TCP_CNT_RESETS_RECEIVED] = {"loupe_tcp_resets_received_total",
					     "TCP resets received on target connections."},
	};
	int err = export_service_counters(reg, &t->L->opt->rules, bpf_map__fd(t->skel->maps.tcp_counters), counters,
					  TCP_CNT_NR, 0);
	if (err)
		return err;
	return loupe_export_drops(reg, "tcp", bpf_map__fd(t->skel->maps.tcp_drops), drop_reasons, TCP_DROP_NR);
}

static void tcp_status(void *priv, struct buf *json)
{
	struct tcp *t = priv;
	buf__printf(json, "\"connections_tracked\":%u,\"conn_table_full\":%lu", t->nconns, t->conn_table_full);
}

static void tcp_close(void *priv)
{
	struct tcp *t = priv;
	if (!t)
		return;
	ring_buffer__free(t->rb);
	tcp_bpf__destroy(t->skel);
	free(t->conns);
	free(t);
}

const struct collector tcp_collector = {
	.name = "tcp",
	.open = tcp_open,
	.attach = tcp_attach,
	.poll = tcp_poll,
	.poll_fd = tcp_poll_fd,
	.collect = tcp_collect,
	.status = tcp_status,
	.close = tcp_close,
};
