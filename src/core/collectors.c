/* The collector table: adding a signal is adding a row. */
#include "core/loupe.h"
#include "lib/bpf_util.h"
#include "lib/log.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/types.h>
#include <string.h>

const struct collector *const collectors[] = {
	&targets_collector, /* first: owns target_svc, which the others share */
	&syscalls_collector,
	&tcp_collector,
	&payload_collector, /* after syscalls, whose object carries the capture */
	&pgusdt_collector, /* after targets: finds postgres binaries among running targets */
	&profiler_collector,
};
const int ncollectors = ARRAY_SIZE(collectors);

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
