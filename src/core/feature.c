// SPDX-License-Identifier: BSD-2-Clause
/* What a collector may ask of the core while it opens and collects (declared in src/core/loupe.h): register its
 * BPF object for per-program statistics, load the tracepoint flavour chosen at start, and count its drops in the
 * shared loupe_events_dropped_total family. Also the names of feature states. */
#include "core/loupe.h"
#include "lib/bpf_util.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/types.h>
#include <string.h>

static const char *const state_names[] = {"off", "loaded", "running", "failed"};

const char *feature_state_name(enum feature_state s)
{
	return state_names[s];
}

void loupe__add_object(struct loupe *L, struct bpf_object *obj)
{
	if (L->nobjects < LOUPE_MAX_OBJECTS)
		L->objects[L->nobjects++] = obj;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

int loupe__select_tp_flavour(struct loupe *L, struct bpf_object *obj, const char **hook)
{
	const char *flavour = L->tp_flavour;
	if (!flavour)
		return -EOPNOTSUPP;
	bool btf = !strcmp(flavour, "tp_btf");
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj) {
		const char *name = bpf_program__name(prog);
		if (ends_with(name, "_btf"))
			bpf_program__set_autoload(prog, btf);
		else if (ends_with(name, "_raw"))
			bpf_program__set_autoload(prog, !btf);
	}
	*hook = flavour;
	if (L->opening)
		L->opening->hook = flavour;
	return 0;
}

struct metric_family *loupe_drops_family(struct registry *reg)
{
	static const char *const labels[] = {"feature", "reason", NULL};
	return registry__family(reg, "loupe_events_dropped_total",
				"Events lost before they were counted, by feature and reason (full ring buffers or maps).",
				METRIC_COUNTER, labels, 256, FAMILY_SNAPSHOT);
}

int loupe_export_drops(struct registry *reg, const char *feature, int map_fd, const char *const *reasons,
		       unsigned nreasons)
{
	struct metric_family *drops = loupe_drops_family(reg);
	if (!drops)
		return -ENOMEM;
	for (__u32 r = 0; r < nreasons; r++) {
		uint64_t sum = 0;
		percpu_sum_u64(map_fd, &r, &sum, 1);
		const char *v[] = {feature, reasons[r]};
		family__add(drops, v, (double)sum);
	}
	return 0;
}
