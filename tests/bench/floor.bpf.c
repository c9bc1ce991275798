// SPDX-License-Identifier: GPL-2.0
/* The benchmark floor: empty programs on the hooks bpf/syscalls.bpf.c uses. Attaching anything to sys_enter or
 * sys_exit moves every syscall on the host onto the traced entry/exit path; these programs measure that price alone,
 * so scripts/bench.sh can tell what loupe's own instructions add on top of it. The loader picks the tp_btf or the
 * raw_tp pair, like loupe's --tracepoints.
 *
 * The other pairs are for explaining a gap between loupe's untargeted path and the floor (docs/performance.md):
 * each does one piece of that path, or an alternative to it, and nothing else. The sock pair is the floor of
 * payload capture's hooks (bpf/payload.bpf.c): empty programs on sock:sock_send_length and sock:sock_recv_length,
 * which every socket send and receive on the host then runs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

/* Same shape as target_svc (bpf/targets.bpf.h): indexed by tgid, sized to pid_max by the loader. All zero. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} floor_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} floor_task_svc SEC(".maps");

__u64 sink; /* keeps the compiler from dropping the work */

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_enter_btf, struct pt_regs *regs, long id) { return 0; }
SEC("tp_btf/sys_exit")
int BPF_PROG(floor_exit_btf, struct pt_regs *regs, long ret) { return 0; }

SEC("raw_tp/sys_enter")
int BPF_PROG(floor_enter_raw, struct pt_regs *regs, long id) { return 0; }
SEC("raw_tp/sys_exit")
int BPF_PROG(floor_exit_raw, struct pt_regs *regs, long ret) { return 0; }

/* --variant pidtgid: the helper call of loupe's untargeted path, no map. */
static __always_inline int pidtgid(void)
{
	if ((bpf_get_current_pid_tgid() >> 32) == 0xffffffff)
		sink++;
	return 0;
}
SEC("tp_btf/sys_enter")
int BPF_PROG(pidtgid_enter_btf, struct pt_regs *regs, long id) { return pidtgid(); }
SEC("tp_btf/sys_exit")
int BPF_PROG(pidtgid_exit_btf, struct pt_regs *regs, long ret) { return pidtgid(); }

/* --variant lookup: loupe's untargeted path exactly (helper + tgid-indexed array lookup + return). */
static __always_inline int lookup(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 *svc = bpf_map_lookup_elem(&floor_svc, &tgid);
	if (svc && *svc)
		sink++;
	return 0;
}
SEC("tp_btf/sys_enter")
int BPF_PROG(lookup_enter_btf, struct pt_regs *regs, long id) { return lookup(); }
SEC("tp_btf/sys_exit")
int BPF_PROG(lookup_exit_btf, struct pt_regs *regs, long ret) { return lookup(); }

/* --variant task: the alternative of keeping the service in task local storage (NULL for untargeted tasks). */
static __always_inline int task(void)
{
	__u32 *svc = bpf_task_storage_get(&floor_task_svc, bpf_get_current_task_btf(), 0, 0);
	if (svc && *svc)
		sink++;
	return 0;
}
SEC("tp_btf/sys_enter")
int BPF_PROG(task_enter_btf, struct pt_regs *regs, long id) { return task(); }
SEC("tp_btf/sys_exit")
int BPF_PROG(task_exit_btf, struct pt_regs *regs, long ret) { return task(); }

/* --variant sock: empty programs on the socket tracepoints payload capture uses. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_btf, struct sock *sk, int ret, int flags) { return 0; }
SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv_btf, struct sock *sk, int ret, int flags) { return 0; }
