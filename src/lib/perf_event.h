/* SPDX-License-Identifier: BSD-2-Clause */
/* A BPF program on a cpu-clock perf event of every CPU: what continuous sampling and on-demand sessions both
 * open and close. */
#ifndef LOUPE_PERF_EVENT_H
#define LOUPE_PERF_EVENT_H

struct bpf_program;
struct bpf_link;

/* Zero-initialised is detached. */
struct cpu_perf {
	int ncpus;
	int *fds;		/* perf event per CPU, -1 where none could be opened; links[cpu] owns it once attached */
	struct bpf_link **links;
};

/* Open a cpu-clock event sampling at hz on each of ncpus CPUs and attach prog to each: the number of CPUs
 * attached (0 when none; failures are logged, CPUs possible but offline silently skipped), or -ENOMEM. Call
 * cpu_perf__detach() in every case. */
int cpu_perf__attach(struct cpu_perf *cp, struct bpf_program *prog, int ncpus, unsigned hz);
void cpu_perf__detach(struct cpu_perf *cp);

#endif
