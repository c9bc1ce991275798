// SPDX-License-Identifier: BSD-2-Clause
/* Kernel maps into metric families (src/collectors/export.h). */
#include "collectors/export.h"
#include "hist.h"
#include "lib/bpf_util.h"
#include "lib/util.h"

#include <errno.h>
#include <math.h>

struct metric_family *log2_hist_family(struct registry *reg, const char *name, const char *help,
				       const char *const *labels)
{
	struct metric_family *f = registry__family(reg, name, help, METRIC_HISTOGRAM, labels, 0, FAMILY_SNAPSHOT);
	if (f) {
		double bounds[HIST_SLOTS - 1];
		for (int k = 0; k < HIST_SLOTS - 1; k++)
			bounds[k] = ldexp(1.0, k + HIST_MIN_SHIFT) / (double)NSEC_PER_SEC;
		if (family__set_buckets(f, bounds, HIST_SLOTS - 1))
			return NULL; /* out of memory: a histogram of +Inf alone would mislead */
	}
	return f;
}

void log2_hist_observe(struct metric_family *f, const char *const *v, const uint64_t *words)
{
	family__observe_counts(f, v, words, HIST_SLOTS, ns_to_seconds(words[HIST_SLOTS]));
}

int export_service_counters(struct registry *reg, const struct target_rules *rules, int map_fd,
			    const struct counter_def *defs, unsigned ncounters, uint64_t skip)
{
	static const char *const labels[] = {"service_name", NULL};
	for (unsigned c = 0; c < ncounters; c++) {
		if (skip & (1ull << c))
			continue;
		struct metric_family *f =
			registry__family(reg, defs[c].name, defs[c].help, METRIC_COUNTER, labels, 0, FAMILY_SNAPSHOT);
		if (!f)
			return -ENOMEM;
		for (int s = 1; s <= rules->nservices; s++) {
			uint32_t idx = (uint32_t)s * ncounters + c;
			uint64_t sum = 0;
			percpu_sum_u64(map_fd, &idx, &sum, 1);
			const char *v[] = {rules->service[s]};
			family__add(f, v, (double)sum);
		}
	}
	return 0;
}
