/* SPDX-License-Identifier: GPL-2.0 */
/* Small arithmetic helpers for BPF programs. */
#ifndef LOUPE_BITS_BPF_H
#define LOUPE_BITS_BPF_H
#include "hist.h"

/* Time units: vmlinux.h has no macros, and src/lib/util.h (userspace's copy) is not for BPF objects. */
#ifndef NSEC_PER_MSEC
#define NSEC_PER_MSEC 1000000ULL
#endif

/* floor(log2(v)) for v > 0, branch-light (the verifier sees a bounded result). */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;
	shift = (v > 0xFFFFFFFFull) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

/* Histogram slot of a duration in ns (see include/hist.h). */
static __always_inline __u32 hist_slot(__u64 ns)
{
	if (ns < (1ull << HIST_MIN_SHIFT))
		return 0;
	__u32 s = log2_u64(ns) - HIST_MIN_SHIFT + 1;
	return s < HIST_SLOTS ? s : HIST_SLOTS - 1;
}

static __always_inline void count_drop(void *map, __u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(map, &reason);
	if (c)
		(*c)++;
}

#endif
