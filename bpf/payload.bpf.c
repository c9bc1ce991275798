// SPDX-License-Identifier: GPL-2.0
/* Payload capture on the socket tracepoints: sock:sock_recv_length and sock:sock_send_length fire when a
 * socket's recvmsg or sendmsg returns, inside the read or write syscall of the task, and only for socket I/O. So
 * HTTP, WebSocket and PostgreSQL signals cost the host's other syscalls nothing, and need no syscall hook at all
 * (--syscalls off): the socket is the tracepoint's argument, and the bytes are in the user buffers that the
 * syscall's own arguments name (the task's user registers).
 *
 * For read, readv, recvfrom, recvmsg, write, writev, sendto and sendmsg of a target process that moved bytes on a
 * TCP socket, the first capture_bytes of them (gathered over up to PAYLOAD_IOV_MAX iovecs), and for longer
 * single-buffer calls also their last PAYLOAD_TAIL bytes, go to userspace through pl_rings (a ring buffer per
 * CPU), with the connection's identity, the byte count and a timestamp. pl_conns holds each
 * captured connection's state from its first such call to TCP_CLOSE; userspace marks the ones no protocol
 * parser wants as PL_STOPPED, and from then on their calls cost a lookup and nothing else. Socket I/O of other
 * syscalls (sendfile, splice, sendmmsg, io_uring) and of kernel threads is not captured. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bits.bpf.h"
#include "core_fixes.bpf.h"
#include "maps.bpf.h"
#include "targets.bpf.h"
#include "payload.h"

char LICENSE[] SEC("license") = "GPL";

#define PL_AF_INET 2
#define PL_AF_INET6 10
#define PL_SOCK_STREAM 1
#define PL_MSG_PEEK 2

/* x86_64 syscall numbers of the calls captured. */
#define PL_NR_READ 0
#define PL_NR_WRITE 1
#define PL_NR_READV 19
#define PL_NR_WRITEV 20
#define PL_NR_SENDTO 44
#define PL_NR_RECVFROM 45
#define PL_NR_SENDMSG 46
#define PL_NR_RECVMSG 47

const volatile __u32 capture_bytes = PAYLOAD_DEFAULT_CAPTURE; /* 0: capture off */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct pl_conn);
} pl_conns SEC(".maps");

/* One ring buffer per CPU, each written only by the programs that run on its CPU. With one ring for the host, every
 * record's reservation took the ring's lock and producer position from the CPU that wrote last: under pgbench -S on
 * two CPUs that was a third of the capture programs' time (docs/performance.md, "The evening of 2026-12-06").
 * Records of one connection can now sit in two rings (its task moved between CPUs); userspace merges the rings by
 * timestamp (src/lib/cpurings.c). Userspace sizes the rings, creates them and fills this array before
 * it attaches. */
struct pl_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* a template: userspace sets the size */
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* possible CPUs, set by userspace */
	__type(key, __u32);
	__array(values, struct pl_ring);
} pl_rings SEC(".maps");

/* A quarter of one ring: when that much waits in it, the reader is woken (set by userspace with the size). */
const volatile __u32 ring_wakeup_bytes = 1024 * 1024;

static __always_inline void *pl_ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&pl_rings, &cpu);
}

struct pl_scratch {
	/* Bytes this CPU has output since it last asked the ring how full it is: beside the header, in a cache line
	 * every record writes anyway. Approximate: a close in softirq may interleave with a capture's update. */
	__u64 unqueried;
	struct pl_hdr h; /* a record is h and the data after it */
	/* An offset masked to the capture plus a read of the capture (or of the tail) fits. */
	__u8 data[2 * PAYLOAD_MAX_CAPTURE + 2 * PAYLOAD_TAIL];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pl_scratch);
} pl_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PL_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} pl_drops SEC(".maps");

__u64 pl_next_id = 0;

/* Records do not wake the reader one by one: a wakeup is an interrupt (a self-IPI, a VM exit on a guest) in the
 * traced task's context, dearer than the capture. Userspace reads every PL_POLL_MS anyway; a wakeup is forced
 * only when a quarter of a ring is waiting. Asking the ring how much is waiting reads the reader's position, a
 * cache line that the reader writes from another CPU: a miss once other work has evicted it (20-25 ns a record
 * with the other CPU busy, nothing on a quiet host: scripts/bench-cost.sh --only c, docs/performance.md). So each
 * CPU asks once per PL_QUERY_BYTES it has output to its ring. */
#define PL_QUERY_BYTES (16 * 1024)

static __always_inline __u64 pl_wakeup_flag(void *ring, struct pl_scratch *s, __u32 bytes)
{
	s->unqueried += bytes;
	if (s->unqueried < PL_QUERY_BYTES)
		return BPF_RB_NO_WAKEUP;
	s->unqueried = 0;
	return bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= ring_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									     : BPF_RB_NO_WAKEUP;
}

static __always_inline bool pl_is_captured_nr(__u32 nr)
{
	return nr <= PL_NR_WRITE || nr == PL_NR_READV || nr == PL_NR_WRITEV ||
	       (nr >= PL_NR_SENDTO && nr <= PL_NR_RECVMSG);
}

/* BTF-typed programs (tp_btf) read kernel memory with direct loads, which the JIT turns into plain loads with
 * a fault handler; raw_tp programs must call bpf_probe_read_kernel() for each field (~100 ns each here,
 * measured: scripts/bench.sh). PL_RD picks the form; `btf` is a constant in each program, so the other branch is
 * compiled out. */
#define PL_RD(btf, p, field) ((btf) ? (p)->field : BPF_CORE_READ(p, field))
/* Syscall argument n (1-based) of the user registers regs, in the same two forms, through libbpf's portable
 * macros (bpf_tracing.h knows which register holds it on each __TARGET_ARCH). */
#define PL_ARG(btf, regs, n) ((btf) ? PT_REGS_PARM##n##_SYSCALL(regs) : PT_REGS_PARM##n##_CORE_SYSCALL(regs))

/* Bytes that had moved on the connection before this call, in either direction, beyond the SYN's sequence
 * number that bytes_acked may count: the capture then begins mid-stream. */
static __always_inline bool pl_midstream(struct sock *sk, __u8 dir, long ret)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 rcvd = BPF_CORE_READ(tp, bytes_received) - (__u32)(BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq));
	__u64 sent = BPF_CORE_READ(tp, bytes_acked) + (__u32)(BPF_CORE_READ(tp, write_seq) - BPF_CORE_READ(tp, snd_una));
	if (dir == PL_DIR_IN)
		rcvd -= ret;
	else
		sent -= ret;
	return (__s64)rcvd > 1 || (__s64)sent > 1;
}

/* Copy up to want bytes from the user buffers of the call into s->data; returns the bytes copied. */
static __always_inline __u32 pl_gather(struct pl_scratch *s, __u32 nr, struct pt_regs *regs, __u32 want,
					const bool btf)
{
	unsigned long arg2 = PL_ARG(btf, regs, 2);
	struct iovec *iov;
	__u64 iovcnt;
	if (nr == PL_NR_READ || nr == PL_NR_WRITE || nr == PL_NR_RECVFROM || nr == PL_NR_SENDTO) {
		if (bpf_probe_read_user(s->data, want & (PAYLOAD_MAX_CAPTURE * 2 - 1), (void *)arg2))
			return 0;
		return want;
	}
	if (nr == PL_NR_READV || nr == PL_NR_WRITEV) {
		iov = (struct iovec *)arg2;
		iovcnt = PL_ARG(btf, regs, 3);
	} else { /* sendmsg, recvmsg */
		struct user_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)arg2))
			return 0;
		iov = m.msg_iov;
		iovcnt = m.msg_iovlen;
	}
	__u32 off = 0;
	for (int i = 0; i < PAYLOAD_IOV_MAX; i++) {
		struct iovec v;
		if (i >= iovcnt || off >= want)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			break;
		__u64 n = v.iov_len;
		if (n > want - off)
			n = want - off;
		if (n > PAYLOAD_MAX_CAPTURE)
			n = PAYLOAD_MAX_CAPTURE;
		if (bpf_probe_read_user(&s->data[off & (PAYLOAD_MAX_CAPTURE - 1)], n, v.iov_base))
			break;
		off += n;
	}
	return off;
}

/* A single-buffer call's capture that fits is gathered in a buffer on the BPF stack instead of the per-CPU scratch:
 * 6% less capture time per record (scripts/bench-cost.sh --only c, docs/performance.md). The JIT puts it on the
 * task's kernel stack (Linux 6.18 here: rbp-relative, no private stack), where hardened usercopy's check of the
 * destination is its short stack path. 48 + 256 + 64 bytes of the program's 512: the default --capture-bytes 256
 * fits; larger captures and the iovec calls use the scratch. */
#define PL_STACK_CAP 256
struct pl_small {
	struct pl_hdr h;
	__u8 data[PL_STACK_CAP + PAYLOAD_TAIL];
};

static __always_inline void pl_fill_hdr(struct pl_hdr *h, struct pl_conn *c, __u64 key, __u64 now, long ret,
					__u32 got, __u32 tail, __u8 dir, __u8 flags)
{
	if (c->lost)
		flags |= PL_F_LOST;
	h->type = REC_PL_DATA;
	h->service = c->service;
	h->conn_id = c->id;
	h->sk = key;
	h->ts_ns = now;
	h->len = ret > 0xffffffffL ? 0xffffffffu : (__u32)ret;
	h->cap = (__u16)got;
	h->dir = dir;
	h->flags = flags;
	h->tail = (__u16)tail;
}

static __always_inline void pl_output(struct pl_conn *c, struct pl_scratch *s, void *rec, __u32 size)
{
	void *ring = pl_ring();
	if (!ring || bpf_ringbuf_output(ring, rec, size, pl_wakeup_flag(ring, s, size))) {
		c->lost = 1;
		count_drop(&pl_drops, PL_DROP_RINGBUF);
	} else {
		c->lost = 0;
	}
}

/* The stack path of pl_capture(): want <= PL_STACK_CAP bytes of a read, write, recvfrom or sendto, and its tail. */
static __always_inline void pl_capture_small(struct pl_conn *c, struct pl_scratch *s, struct pt_regs *regs, __u64 key,
					     __u64 now, long ret, __u32 want, __u8 dir, __u8 flags, const bool btf)
{
	struct pl_small r;
	const char *buf = (const char *)PL_ARG(btf, regs, 2);
	__u64 got = want;
	barrier_var(got);
	if (got > PL_STACK_CAP)
		return;
	if (bpf_probe_read_user(r.data, got, buf))
		got = 0;
	__u64 tail = 0;
	if (got == want && (__u64)ret > got) {
		tail = (__u64)ret - got;
		if (tail > PAYLOAD_TAIL)
			tail = PAYLOAD_TAIL;
		barrier_var(tail);
		if (tail > PAYLOAD_TAIL || bpf_probe_read_user(&r.data[got], tail, buf + ret - tail))
			tail = 0;
	}
	pl_fill_hdr(&r.h, c, key, now, ret, got, tail, dir, flags);
	__u64 size = sizeof(r.h) + got + tail;
	barrier_var(size);
	if (size > sizeof(r))
		return;
	pl_output(c, s, &r, size);
}

static __always_inline void pl_capture(struct sock *sk, struct pt_regs *regs, __u32 nr, __u8 dir, long ret,
				       __u32 svc, __u64 now, const bool btf)
{
	__u64 key = (__u64)sk;
	__u8 flags = 0;
	struct pl_conn *c = bpf_map_lookup_elem(&pl_conns, &key);
	if (!c) {
		if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE)
			return; /* closed already: a new entry would never be removed */
		struct pl_conn nc = {.id = __sync_fetch_and_add(&pl_next_id, 1) + 1, .service = svc};
		bool created;
		c = map_try_init(&pl_conns, &key, &nc, &created);
		if (!c) {
			if (!created)
				count_drop(&pl_drops, PL_DROP_CONN_MAP_FULL);
			return;
		}
		if (created) {
			flags = PL_F_NEW;
			if (pl_midstream(sk, dir, ret))
				flags |= PL_F_MIDSTREAM;
		}
	}
	if (c->state != PL_CAPTURE)
		return;
	__u32 zero = 0;
	struct pl_scratch *s = bpf_map_lookup_elem(&pl_scratch, &zero);
	if (!s)
		return;
	__u32 want = capture_bytes;
	if (want > PAYLOAD_MAX_CAPTURE)
		want = PAYLOAD_MAX_CAPTURE;
	if ((__u64)ret < want)
		want = (__u32)ret;
	bool single = nr == PL_NR_READ || nr == PL_NR_WRITE || nr == PL_NR_RECVFROM || nr == PL_NR_SENDTO;
	if (single && want <= PL_STACK_CAP) {
		pl_capture_small(c, s, regs, key, now, ret, want, dir, flags, btf);
		return;
	}
	__u64 got = pl_gather(s, nr, regs, want, btf);
	if (got > PAYLOAD_MAX_CAPTURE)
		got = PAYLOAD_MAX_CAPTURE;
	barrier_var(got);
	got &= PAYLOAD_MAX_CAPTURE * 2 - 1; /* a no-op the verifier can see: the output stays inside s */
	/* The end of a longer single-buffer call, after the head. */
	__u64 tail = 0;
	if (got == want && (__u64)ret > got && single) {
		tail = (__u64)ret - got;
		if (tail > PAYLOAD_TAIL)
			tail = PAYLOAD_TAIL;
		const char *buf = (const char *)PL_ARG(btf, regs, 2);
		if (bpf_probe_read_user(&s->data[got & (PAYLOAD_MAX_CAPTURE - 1)], tail & (PAYLOAD_TAIL * 2 - 1),
					buf + ret - tail))
			tail = 0;
	}
	barrier_var(tail);
	tail &= PAYLOAD_TAIL * 2 - 1;
	pl_fill_hdr(&s->h, c, key, now, ret, got, tail, dir, flags);
	pl_output(c, s, &s->h, sizeof(s->h) + got + tail);
}

/* TCP_CLOSE ends a captured connection (also in softirq context: the sk is the key, not the task). */
static __always_inline int pl_on_state(const struct sock *sk, int newstate)
{
	if (newstate != TCP_CLOSE)
		return 0;
	__u64 key = (__u64)sk;
	struct pl_conn *c = bpf_map_lookup_elem(&pl_conns, &key);
	if (!c)
		return 0;
	struct pl_hdr h = {.type = REC_PL_CLOSE, .service = c->service, .conn_id = c->id, .sk = key,
			   .ts_ns = bpf_ktime_get_ns(), .flags = c->lost ? PL_F_LOST : 0};
	if (c->state == PL_CAPTURE) {
		__u32 zero = 0;
		struct pl_scratch *s = bpf_map_lookup_elem(&pl_scratch, &zero);
		void *ring = pl_ring();
		__u64 wakeup = s && ring ? pl_wakeup_flag(ring, s, sizeof(h)) : BPF_RB_NO_WAKEUP;
		if (!ring || bpf_ringbuf_output(ring, &h, sizeof(h), wakeup))
			count_drop(&pl_drops, PL_DROP_CLOSE_RINGBUF);
	}
	bpf_map_delete_elem(&pl_conns, &key);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(pl_state_btf, const struct sock *sk, int oldstate, int newstate) { return pl_on_state(sk, newstate); }
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(pl_state_raw, const struct sock *sk, int oldstate, int newstate) { return pl_on_state(sk, newstate); }

/* A TCP socket of the inet families. */
static __always_inline bool pl_is_inet_tcp(struct sock *sk, const bool btf)
{
	if (btf) {
		if (sk->sk_type != PL_SOCK_STREAM || BPF_CORE_READ_BITFIELD(sk, sk_protocol) != IPPROTO_TCP)
			return false;
	} else if (BPF_CORE_READ(sk, sk_type) != PL_SOCK_STREAM ||
		   BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != IPPROTO_TCP) {
		return false;
	}
	__u16 family = PL_RD(btf, sk, __sk_common.skc_family);
	return family == PL_AF_INET || family == PL_AF_INET6;
}

/* A socket's recvmsg (dir in) or sendmsg (dir out) returned ret, in the current task. Untargeted tasks return
 * after one array lookup. The syscall (its number and arguments) is read from the task's user registers: the
 * tracepoint fires inside it. */
static __always_inline int pl_on_io(struct sock *sk, int ret, int flags, __u8 dir, const bool btf)
{
	/* No test of capture_bytes here: with --capture-bytes 0 these programs are not loaded, and reading it is a
	 * cache miss on every untargeted call (the .rodata map's line goes cold between calls). The tgid is read
	 * from the task that the capture needs anyway: one helper call fewer for a target. */
	if (ret <= 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 svc = target_service(task->tgid);
	if (!svc || !sk)
		return 0;
	if (dir == PL_DIR_IN && (flags & PL_MSG_PEEK))
		return 0; /* the bytes stay queued: the next read reports them */
	if (!pl_is_inet_tcp(sk, btf))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return 0;
	__u32 nr = syscall_nr(regs, btf);
	if (!pl_is_captured_nr(nr))
		return 0; /* sendfile, splice, sendmmsg, io_uring, a kernel thread: not a call we can read */
	__u8 nr_dir = (nr == PL_NR_READ || nr == PL_NR_READV || nr == PL_NR_RECVFROM || nr == PL_NR_RECVMSG)
			      ? PL_DIR_IN
			      : PL_DIR_OUT;
	if (nr_dir != dir)
		return 0;
	pl_capture(sk, regs, nr, dir, ret, svc, bpf_ktime_get_ns(), btf);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(pl_recv_btf, struct sock *sk, int ret, int flags) { return pl_on_io(sk, ret, flags, PL_DIR_IN, true); }
SEC("raw_tp/sock_recv_length")
int BPF_PROG(pl_recv_raw, struct sock *sk, int ret, int flags) { return pl_on_io(sk, ret, flags, PL_DIR_IN, false); }

SEC("tp_btf/sock_send_length")
int BPF_PROG(pl_send_btf, struct sock *sk, int ret, int flags) { return pl_on_io(sk, ret, flags, PL_DIR_OUT, true); }
SEC("raw_tp/sock_send_length")
int BPF_PROG(pl_send_raw, struct sock *sk, int ret, int flags) { return pl_on_io(sk, ret, flags, PL_DIR_OUT, false); }
