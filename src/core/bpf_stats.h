/* SPDX-License-Identifier: BSD-2-Clause */
/* Kernel BPF run-time statistics, switched on in windows (--bpf-stats): each program run pays two clock reads
 * while they are on, so by default they are on BPF_STATS_WINDOW_S in every BPF_STATS_PERIOD_S. */
#ifndef LOUPE_BPF_STATS_H
#define LOUPE_BPF_STATS_H
#include <stdint.h>

struct loupe;

/* Open the first window (longer: figures from the first scrapes, and a start-up to look at), unless off. */
void bpf_stats__start(struct loupe *L, uint64_t now);
/* From the main loop, at least once a second: open and close sampled windows (takes L->lock to switch). */
void bpf_stats__tick(struct loupe *L, uint64_t now);
/* Close the open window, if any. */
void bpf_stats__stop(struct loupe *L, uint64_t now);
/* Seconds statistics have been on (closed windows plus the open one). */
double bpf_stats__seconds(const struct loupe *L);

#endif
