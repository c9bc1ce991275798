/* Helpers over libbpf for collectors. */
#ifndef LOUPE_BPF_UTIL_H
#define LOUPE_BPF_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* Look up a per-CPU map element whose value is nwords u64s and sum each word over all possible CPUs.
 * Returns 0, -ENOENT when absent, or -errno. */
int percpu_sum_u64(int map_fd, const void *key, uint64_t *out, size_t nwords);

#endif
