/* SPDX-License-Identifier: BSD-2-Clause */
/* Helpers over libbpf for collectors. */
#ifndef LOUPE_BPF_UTIL_H
#define LOUPE_BPF_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* Look up a per-CPU map element whose value is nwords u64s and sum each word over all possible CPUs.
 * Returns 0, -ENOENT when absent, or -errno. */
int percpu_sum_u64(int map_fd, const void *key, uint64_t *out, size_t nwords);

/* Sum every element [0, nkeys) of a per-CPU array (values of nwords u64s) over CPUs into out[key * nwords + w],
 * with batched lookups (a few syscalls per scrape instead of one per key) when the kernel has them. */
int percpu_array_sum_all(int map_fd, uint32_t nkeys, size_t nwords, uint64_t *out);

/* enum bpf_attach_type's BPF_TRACE_UPROBE_MULTI (Linux 6.6), which the libbpf loupe builds with (1.1) predates.
 * A kprobe-type program loaded with it attaches only through uprobe_multi_link(), never to a perf event. */
#define LOUPE_TRACE_UPROBE_MULTI 48

/* One BPF link (BPF_LINK_CREATE, BPF_TRACE_UPROBE_MULTI) placing prog_fd's program at cnt file offsets of the
 * ELF file at path, in every process that maps it (ref_ctr_offsets: the USDT semaphores' file offsets, 0 for
 * none; may be NULL). Unlike a perf-event uprobe, which Linux 6.15+ (and its stable backports) allow only with
 * CAP_SYS_ADMIN, this needs no capability beyond the CAP_BPF and CAP_PERFMON that loaded the program.
 * Returns the link's fd (close it to detach) or -errno. */
int uprobe_multi_link(int prog_fd, const char *path, const uint64_t *offsets, const uint64_t *ref_ctr_offsets,
		      unsigned cnt);

#endif
