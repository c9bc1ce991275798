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

#endif
