/* SPDX-License-Identifier: BSD-2-Clause */
/* Kernel maps into metric families, the shapes several collectors share: log2 latency histograms
 * (include/hist.h) and per-service per-CPU counter arrays. */
#ifndef LOUPE_EXPORT_H
#define LOUPE_EXPORT_H
#include <stdint.h>

#include "metrics/registry.h"
#include "parsers/target_rules.h"

/* A snapshot histogram family in seconds with the bucket bounds of include/hist.h's log2 slots. */
struct metric_family *log2_hist_family(struct registry *reg, const char *name, const char *help,
				       const char *const *labels);
/* Observe one struct loupe_hist, summed over CPUs (HIST_SLOTS counts, then the sum in ns), as label set v. */
void log2_hist_observe(struct metric_family *f, const char *const *v, const uint64_t *words);

/* One counter of a per-service array. */
struct counter_def {
	const char *name, *help;
};

/* A per-CPU array of u64 counters indexed [service * ncounters + counter] into one snapshot counter family per
 * counter, labelled service_name, for every service of rules; counters whose bit is set in skip are left out.
 * 0 or -ENOMEM. */
int export_service_counters(struct registry *reg, const struct target_rules *rules, int map_fd,
			    const struct counter_def *defs, unsigned ncounters, uint64_t skip);

#endif
