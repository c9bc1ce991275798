// SPDX-License-Identifier: BSD-2-Clause
/* Helpers over libbpf for collectors (src/lib/bpf_util.h): per-CPU map values summed over CPUs, batched where the
 * kernel allows. */
#include "lib/bpf_util.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* percpu_array_sum_all without batch operations (not for this map type on this kernel): one lookup per key. */
static int percpu_array_sum_each(int map_fd, uint32_t nkeys, size_t nwords, uint64_t *out)
{
	int err = 0;
	for (uint32_t k = 0; k < nkeys && !err; k++) {
		err = percpu_sum_u64(map_fd, &k, out + (size_t)k * nwords, nwords);
		if (err == -ENOENT)
			err = 0;
	}
	return err;
}

int percpu_array_sum_all(int map_fd, uint32_t nkeys, size_t nwords, uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	const uint32_t chunk = 64;
	uint32_t *keys = malloc(chunk * sizeof(*keys));
	uint64_t *vals = malloc((size_t)chunk * (size_t)ncpu * nwords * sizeof(*vals));
	int err = 0;
	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	memset(out, 0, (size_t)nkeys * nwords * sizeof(*out));
	uint32_t batch = 0, *in = NULL, done = 0;
	while (done < nkeys) {
		uint32_t count = chunk;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		int rc = bpf_map_lookup_batch(map_fd, in, &batch, keys, vals, &count, &opts);
		if (rc && errno != ENOENT) {
			err = -errno;
			break;
		}
		for (uint32_t i = 0; i < count; i++) {
			if (keys[i] >= nkeys)
				continue;
			for (int c = 0; c < ncpu; c++)
				for (size_t w = 0; w < nwords; w++)
					out[(size_t)keys[i] * nwords + w] += vals[((size_t)i * ncpu + c) * nwords + w];
		}
		done += count;
		in = &batch;
		if (rc) /* ENOENT: the last batch */
			break;
	}
	if (err == -EINVAL || err == -ENOTSUP || err == -EOPNOTSUPP)
		err = percpu_array_sum_each(map_fd, nkeys, nwords, out);
out:
	free(keys);
	free(vals);
	return err;
}

int uprobe_multi_link(int prog_fd, const char *path, const uint64_t *offsets, const uint64_t *ref_ctr_offsets,
		      unsigned cnt)
{
	/* union bpf_attr's link_create with its uprobe_multi member, as in Linux 6.6's uapi/linux/bpf.h (the headers
	 * loupe builds with may be older): written out so that the layout does not depend on them. */
	struct {
		uint32_t prog_fd, target_fd, attach_type, flags;
		uint64_t path, offsets, ref_ctr_offsets, cookies;
		uint32_t cnt, uflags, pid;
		uint8_t pad[160 - 60]; /* the rest of union bpf_attr, zero */
	} attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = (uint32_t)prog_fd;
	attr.attach_type = LOUPE_TRACE_UPROBE_MULTI;
	attr.path = (uint64_t)(uintptr_t)path;
	attr.offsets = (uint64_t)(uintptr_t)offsets;
	attr.ref_ctr_offsets = (uint64_t)(uintptr_t)ref_ctr_offsets;
	attr.cnt = cnt;
	int fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}
