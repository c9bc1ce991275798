/* SPDX-License-Identifier: GPL-2.0 */
/* The hot-path target test, shared by every BPF object. target_svc is owned by targets.bpf.c; other objects
 * declare it too and userspace makes them share one map (bpf_map__reuse_fd) before load. */
#ifndef LOUPE_TARGETS_BPF_H
#define LOUPE_TARGETS_BPF_H
#include "targets.h"

/* tgid -> service id (0 = not a target). An array indexed by tgid, sized to pid_max by userspace: the lookup is
 * inlined by the verifier, which keeps the untargeted path of every syscall to one load and a return. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target_svc SEC(".maps");

static __always_inline __u32 target_service(__u32 tgid)
{
	__u32 *svc = bpf_map_lookup_elem(&target_svc, &tgid);
	return svc ? *svc : 0;
}

#endif
