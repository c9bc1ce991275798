/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Log2 latency histograms shared by BPF and userspace. Slot 0 holds [0, 2^HIST_MIN_SHIFT) ns; slot k >= 1 holds
 * [2^(k+HIST_MIN_SHIFT-1), 2^(k+HIST_MIN_SHIFT)) ns, so its upper bound (Prometheus `le`) is 2^(k+HIST_MIN_SHIFT) ns;
 * the last slot is +Inf. With 10 and 27: 1.024 us ... 34.4 s, then +Inf. */
#ifndef LOUPE_HIST_H
#define LOUPE_HIST_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define HIST_MIN_SHIFT 10
#define HIST_SLOTS 27

struct loupe_hist {
	__u64 slots[HIST_SLOTS];
	__u64 sum_ns;
};

#endif
