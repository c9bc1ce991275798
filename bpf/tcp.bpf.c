// SPDX-License-Identifier: GPL-2.0
/* TCP lifecycle of target services, from sock:inet_sock_set_state and the tcp tracepoints. Many of these state
 * changes run in softirq context, where `current` is whatever task was interrupted: attribution therefore never
 * uses the current task there. A connection belongs to a service when a target's task called connect() (the
 * CLOSE -> SYN_SENT change runs in that task) or when it arrives on a port a target listens on (the
 * CLOSE -> LISTEN change runs in the listen() caller). From then on the socket pointer is the key. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bits.bpf.h"
#include "targets.bpf.h"
#include "tcp.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

struct tcp_conn {
	__u32 service;
	__u8 dir;
	__u8 fin_received; /* the peer's FIN is in bytes_received (counted by rcv_nxt), not data */
	__u8 pad[2];
	__u64 connect_start_ns;
	__u64 established_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct tcp_conn);
} tcp_conns SEC(".maps");

/* Connections that just closed (sk -> service): resets are sent after the state has become CLOSE (e.g.
 * tcp_disconnect() for SO_LINGER 0), so their attribution outlives tcp_conns. Cleared when the sk is reused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} tcp_closed SEC(".maps");

/* local port -> service, for ports target processes listen on */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u16);
	__type(value, __u32);
} tcp_listeners SEC(".maps");

/* [service][counter], service 0 unused */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, (LOUPE_MAX_SERVICES + 1) * TCP_CNT_NR);
	__type(key, __u32);
	__type(value, __u64);
} tcp_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
} tcp_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} tcp_drops SEC(".maps");

static __always_inline void count(__u32 svc, __u32 what)
{
	__u32 idx = svc * TCP_CNT_NR + what;
	__u64 *c = bpf_map_lookup_elem(&tcp_counters, &idx);
	if (c)
		(*c)++;
}

static __always_inline struct tcp_rec *rec_new(__u32 type, const struct sock *sk, __u32 svc, __u8 dir, __u64 now)
{
	struct tcp_rec *r = bpf_ringbuf_reserve(&tcp_events, sizeof(*r), 0);
	if (!r) {
		count_drop(&tcp_drops, TCP_DROP_RINGBUF);
		return NULL;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->type = type;
	r->service = svc;
	r->dir = dir;
	r->sk = (__u64)sk;
	r->ts_ns = now;
	r->family = (__u8)BPF_CORE_READ(sk, __sk_common.skc_family);
	r->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	r->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (r->family == AF_INET6) {
		BPF_CORE_READ_INTO(&r->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&r->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)r->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)r->raddr, sk, __sk_common.skc_daddr);
	}
	return r;
}

static __always_inline int on_state(const struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk, now = bpf_ktime_get_ns();
	struct tcp_conn *c;

	/* A socket that changes state again is no longer the one that closed (TCP state changes are rare next to
	 * syscalls: this delete is affordable on every one). */
	if (newstate != TCP_CLOSE)
		bpf_map_delete_elem(&tcp_closed, &key);

	if (newstate == TCP_LISTEN) { /* listen(): runs in the caller's task */
		__u32 svc = target_service(bpf_get_current_pid_tgid() >> 32);
		if (!svc)
			return 0;
		__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
		bpf_map_update_elem(&tcp_listeners, &port, &svc, BPF_ANY);
		struct tcp_rec *r = rec_new(REC_TCP_LISTEN, sk, svc, 0, now);
		if (r)
			bpf_ringbuf_submit(r, 0);
		return 0;
	}
	if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
		__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
		bpf_map_delete_elem(&tcp_listeners, &port);
		return 0;
	}
	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) { /* connect(): runs in the caller's task */
		__u32 svc = target_service(bpf_get_current_pid_tgid() >> 32);
		if (!svc)
			return 0;
		struct tcp_conn conn = {.service = svc, .dir = TCP_DIR_OUTBOUND, .connect_start_ns = now};
		if (bpf_map_update_elem(&tcp_conns, &key, &conn, BPF_ANY))
			count_drop(&tcp_drops, TCP_DROP_CONN_MAP_FULL);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED) {
		c = bpf_map_lookup_elem(&tcp_conns, &key);
		if (c && oldstate == TCP_SYN_SENT) {
			c->established_ns = now;
			struct tcp_rec *r = rec_new(REC_TCP_OPEN, sk, c->service, c->dir, now);
			if (r) {
				r->connect_ns = now - c->connect_start_ns;
				bpf_ringbuf_submit(r, 0);
			}
			return 0;
		}
		if (oldstate != TCP_SYN_RECV)
			return 0;
		/* Passive open, in softirq: the port it arrived on says whose it is. */
		__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
		__u32 *svc = bpf_map_lookup_elem(&tcp_listeners, &port);
		if (!svc)
			return 0;
		struct tcp_conn conn = {.service = *svc, .dir = TCP_DIR_INBOUND, .established_ns = now};
		if (bpf_map_update_elem(&tcp_conns, &key, &conn, BPF_ANY)) {
			count_drop(&tcp_drops, TCP_DROP_CONN_MAP_FULL);
			return 0;
		}
		struct tcp_rec *r = rec_new(REC_TCP_OPEN, sk, conn.service, conn.dir, now);
		if (r)
			bpf_ringbuf_submit(r, 0);
		return 0;
	}
	if (newstate == TCP_CLOSE_WAIT || newstate == TCP_CLOSING) {
		c = bpf_map_lookup_elem(&tcp_conns, &key);
		if (c)
			c->fin_received = 1;
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	c = bpf_map_lookup_elem(&tcp_conns, &key);
	if (!c)
		return 0;
	/* FIN_WAIT2 -> CLOSE is the peer's FIN arriving (tcp_fin() -> tcp_time_wait() -> tcp_done()); the
	 * FIN_WAIT2 timeout takes the same path, and then one byte too few is counted. */
	if (oldstate == TCP_FIN_WAIT2)
		c->fin_received = 1;
	struct tcp_rec *r = rec_new(c->established_ns ? REC_TCP_CLOSE : REC_TCP_CONNECT_FAIL, sk, c->service, c->dir,
				    now);
	if (r) {
		const struct tcp_sock *tp = (const struct tcp_sock *)sk;
		if (c->established_ns)
			r->duration_ns = now - c->established_ns;
		else
			r->connect_ns = now - c->connect_start_ns;
		/* Data bytes only: bytes_acked and bytes_received also count SYN and FIN sequence numbers;
		 * bytes_sent counts every data byte put on the wire, retransmissions included. */
		r->bytes_sent = BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans);
		r->bytes_received = BPF_CORE_READ(tp, bytes_received) - c->fin_received;
		r->total_retrans = BPF_CORE_READ(tp, total_retrans);
		r->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3; /* stored << 3 (net/ipv4/tcp_input.c) */
		bpf_ringbuf_submit(r, 0);
	}
	__u32 svc = c->service;
	bpf_map_update_elem(&tcp_closed, &key, &svc, BPF_ANY);
	bpf_map_delete_elem(&tcp_conns, &key);
	return 0;
}

static __always_inline int on_sk_counter(const struct sock *sk, __u32 what)
{
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct tcp_conn *c = bpf_map_lookup_elem(&tcp_conns, &key);
	if (c) {
		if (c->service <= LOUPE_MAX_SERVICES)
			count(c->service, what);
		return 0;
	}
	__u32 *svc = bpf_map_lookup_elem(&tcp_closed, &key);
	if (svc && *svc <= LOUPE_MAX_SERVICES)
		count(*svc, what);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state_btf, const struct sock *sk, int oldstate, int newstate) { return on_state(sk, oldstate, newstate); }
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(tcp_state_raw, const struct sock *sk, int oldstate, int newstate) { return on_state(sk, oldstate, newstate); }

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retx_btf, const struct sock *sk) { return on_sk_counter(sk, TCP_CNT_RETRANSMITS); }
SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(tcp_retx_raw, const struct sock *sk) { return on_sk_counter(sk, TCP_CNT_RETRANSMITS); }

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_rst_tx_btf, const struct sock *sk) { return on_sk_counter(sk, TCP_CNT_RESETS_SENT); }
SEC("raw_tp/tcp_send_reset")
int BPF_PROG(tcp_rst_tx_raw, const struct sock *sk) { return on_sk_counter(sk, TCP_CNT_RESETS_SENT); }

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_rst_rx_btf, struct sock *sk) { return on_sk_counter(sk, TCP_CNT_RESETS_RECEIVED); }
SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(tcp_rst_rx_raw, struct sock *sk) { return on_sk_counter(sk, TCP_CNT_RESETS_RECEIVED); }
