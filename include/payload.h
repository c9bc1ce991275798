/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Payload capture: the first bytes of each read/write-family syscall on TCP sockets of target processes, for the
 * userspace protocol parsers (src/collectors/payload.c). Shared by bpf/payload.bpf.c and src/collectors/payload.c. */
#ifndef LOUPE_PAYLOAD_H
#define LOUPE_PAYLOAD_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PAYLOAD_DEFAULT_CAPTURE 256
#define PAYLOAD_MAX_CAPTURE 1024 /* a power of two: the BPF side masks offsets with it */
#define PAYLOAD_IOV_MAX 4	 /* iovecs of readv/writev/recvmsg/sendmsg gathered into one capture */
#define PL_POLL_MS 100		 /* userspace reads the rings this often (records do not wake it up one by one) */
/* The per-CPU capture rings: PL_RINGS_BYTES shared out among the possible CPUs, each a power of two in
 * [PL_RING_MIN, PL_RING_MAX] (2 MiB each on two CPUs, 256 KiB each from 16 CPUs on). */
#define PL_RINGS_BYTES (4u << 20)
#define PL_RING_MIN (256u << 10)
#define PL_RING_MAX (4u << 20)
#define PAYLOAD_TAIL 64		 /* also the last bytes of longer single-buffer calls: where a PostgreSQL backend's
				  * write ends with CommandComplete and ReadyForQuery */

enum payload_rec_type {
	REC_PL_DATA = 32,  /* bytes one syscall transferred on a captured connection */
	REC_PL_CLOSE = 33, /* a captured connection reached TCP_CLOSE */
};

enum payload_dir { PL_DIR_IN = 0, PL_DIR_OUT = 1 }; /* as enum flow_dir: read by the process / written */

/* struct pl_hdr flags */
#define PL_F_NEW 0x1	   /* first record of this connection */
#define PL_F_MIDSTREAM 0x2 /* NEW, and bytes had moved on the connection before capture began */
#define PL_F_LOST 0x4	   /* records of this connection were lost (ring buffer full) just before this one
			    * (also on REC_PL_CLOSE) */

/* Record header; REC_PL_DATA is followed by cap bytes (the call's first bytes), then tail bytes (its last ones:
 * bytes len - tail .. len, never overlapping the first cap). */
struct pl_hdr {
	__u32 type;
	__u32 service;
	__u64 conn_id; /* unique per captured connection (never reused) */
	__u64 sk;      /* struct sock *: the key to stop its capture by */
	__u64 ts_ns;   /* when the socket call returned (CLOSE: the state change), CLOCK_MONOTONIC */
	__u32 len;     /* bytes the call transferred (saturates) */
	__u16 cap;     /* bytes captured, <= len */
	__u8 dir;      /* enum payload_dir */
	__u8 flags;    /* PL_F_* */
	__u16 tail;    /* bytes of the call's end captured after the cap first ones */
	__u16 pad[3];
};

/* Per-connection capture state, kernel map pl_conns (sk -> state). */
enum pl_state { PL_CAPTURE = 0, PL_STOPPED = 1 };

struct pl_conn {
	__u64 id;
	__u32 service;
	__u8 state; /* enum pl_state; userspace sets PL_STOPPED for connections no parser wants */
	__u8 lost;  /* a record was dropped: the next one carries PL_F_LOST */
	__u8 pad[2];
};

enum payload_drop {
	PL_DROP_RINGBUF,       /* a data record did not fit in the ring buffer */
	PL_DROP_CLOSE_RINGBUF, /* a close record did not fit (userspace expires the connection later) */
	PL_DROP_CONN_MAP_FULL, /* no room for a new connection's state: not captured */
	PL_DROP_NR,
};

#endif
