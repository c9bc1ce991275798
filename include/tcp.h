/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* TCP connection lifecycle of target services. Shared by bpf/tcp.bpf.c and src/collectors/tcp.c. */
#ifndef LOUPE_TCP_H
#define LOUPE_TCP_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

enum tcp_rec_type {
	REC_TCP_LISTEN = 16,   /* a target's socket started listening */
	REC_TCP_OPEN = 17,     /* a target's connection reached ESTABLISHED */
	REC_TCP_CLOSE = 18,    /* a tracked connection closed */
	REC_TCP_CONNECT_FAIL = 19, /* an outbound connect of a target never got established */
};

enum tcp_dir { TCP_DIR_INBOUND = 1, TCP_DIR_OUTBOUND = 2 };

/* One record per event. Addresses never leave userspace's peer classification. */
struct tcp_rec {
	__u32 type;
	__u32 service;
	__u8 dir;
	__u8 family; /* AF_INET or AF_INET6 */
	__u16 lport; /* host order */
	__u16 rport; /* host order */
	__u16 pad;
	__u8 laddr[16]; /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
	__u64 sk;          /* connection identity while it lives */
	__u64 ts_ns;       /* when this happened (CLOCK_MONOTONIC) */
	__u64 connect_ns;  /* OPEN, outbound: SYN_SENT -> ESTABLISHED */
	__u64 duration_ns; /* CLOSE: ESTABLISHED -> CLOSE */
	__u64 bytes_sent;     /* CLOSE: data bytes sent (each once: retransmissions not counted) */
	__u64 bytes_received; /* CLOSE: data bytes received */
	__u32 total_retrans;
	__u32 srtt_us;
};

/* Per-service counters that do not need the peer: [service] */
enum tcp_counter {
	TCP_CNT_RETRANSMITS,
	TCP_CNT_RESETS_SENT,
	TCP_CNT_RESETS_RECEIVED,
	TCP_CNT_NR,
};

enum tcp_drop {
	TCP_DROP_RINGBUF,
	TCP_DROP_CONN_MAP_FULL,
	TCP_DROP_NR,
};

#endif
