#include "bpf_util.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int percpu_sum_u64(int map_fd, const void *key, uint64_t *out, size_t nwords)
{
	static uint64_t *vals;
	static size_t cap;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	size_t need = (size_t)ncpu * nwords;
	if (need > cap) {
		uint64_t *v = realloc(vals, need * sizeof(*v));
		if (!v)
			return -ENOMEM;
		vals = v;
		cap = need;
	}
	if (bpf_map_lookup_elem(map_fd, key, vals))
		return -errno;
	memset(out, 0, nwords * sizeof(*out));
	for (int c = 0; c < ncpu; c++)
		for (size_t w = 0; w < nwords; w++)
			out[w] += vals[(size_t)c * nwords + w];
	return 0;
}
