// SPDX-License-Identifier: BSD-2-Clause
/* Per-CPU cpu-clock perf events carrying a BPF program (src/lib/perf_event.h). */
#include "lib/perf_event.h"
#include "lib/log.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int cpu_perf__attach(struct cpu_perf *cp, struct bpf_program *prog, int ncpus, unsigned hz)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.freq = 1,
		.sample_freq = hz,
	};
	cp->fds = malloc((size_t)ncpus * sizeof(*cp->fds));
	cp->links = calloc((size_t)ncpus, sizeof(*cp->links));
	if (!cp->fds || !cp->links)
		return -ENOMEM;
	cp->ncpus = ncpus; /* every fds[cpu] is set below */
	int attached = 0;
	for (int cpu = 0; cpu < ncpus; cpu++) {
		cp->fds[cpu] = (int)syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (cp->fds[cpu] < 0) {
			if (errno != ENODEV) /* possible but not online */
				log_warn("perf_event_open", "cpu %d: %s", cpu, strerror(errno));
			continue;
		}
		if (!(cp->links[cpu] = bpf_program__attach_perf_event(prog, cp->fds[cpu]))) {
			log_warn("profile_attach", "cpu %d: %s", cpu, strerror(errno));
			continue;
		}
		attached++;
	}
	return attached;
}

void cpu_perf__detach(struct cpu_perf *cp)
{
	/* A link owns its perf event: destroying it closed the fd (libbpf's perf link). Closing it again would close
	 * whatever another thread opened under that number since, e.g. a connection the HTTP server just accepted. */
	for (int cpu = 0; cp->fds && cpu < cp->ncpus; cpu++)
		if (cp->fds[cpu] >= 0 && !(cp->links && cp->links[cpu]))
			close(cp->fds[cpu]);
	for (int cpu = 0; cp->links && cpu < cp->ncpus; cpu++)
		bpf_link__destroy(cp->links[cpu]);
	free(cp->links);
	free(cp->fds);
	*cp = (struct cpu_perf){0};
}
