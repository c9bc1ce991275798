// SPDX-License-Identifier: BSD-2-Clause
/* perf maps: entries with names in one buffer, sorted by start then by line order, so a lookup walking back from
 * the last start at or below an address meets the newest line for a start first. */
#include "profile/addrtab.h"
#include "profile/perfmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"


struct pm_entry {
	uint64_t start, size;
	uint32_t name, seq;
};
_Static_assert(offsetof(struct pm_entry, start) == 0, "profile/addrtab.h reads the start first");

struct perf_map {
	char *path;
	struct pm_entry *e;
	size_t n, cap;
	struct buf names;
	uint64_t parsed;	/* bytes of the file consumed (complete lines) */
	uint64_t size;		/* bytes of the file at the last read (past parsed: a line being written) */
	dev_t dev;
	ino_t ino;
	uint32_t seq;
};

static int pm_cmp(const void *a, const void *b)
{
	const struct pm_entry *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Parse the complete lines of text[0..n); returns the bytes consumed. */
static size_t pm_parse(struct perf_map *pm, const char *text, size_t n)
{
	size_t done = 0;
	while (done < n) {
		const char *l = text + done;
		const char *nl = memchr(l, '\n', n - done);
		if (!nl)
			break;	/* a line being written: read it next time */
		size_t len = (size_t)(nl - l);
		done += len + 1;
		char line[1024];
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, l, len);
		line[len] = '\0';
		unsigned long long start, size;
		int pos = 0;
		if (sscanf(line, "%llx %llx %n", &start, &size, &pos) != 2 || !pos || !line[pos] || !size)
			continue;
		char *name = line + pos;
		name[strcspn(name, "\r")] = '\0';
		if (!*name)
			continue;
		if (pm->n == pm->cap) {
			size_t nc = pm->cap ? pm->cap * 2 : 256;
			struct pm_entry *ne = realloc(pm->e, nc * sizeof(*ne));
			if (!ne)
				break;
			pm->e = ne;
			pm->cap = nc;
		}
		pm->e[pm->n++] = (struct pm_entry){start, size, (uint32_t)pm->names.len, pm->seq++};
		buf__append(&pm->names, name, strlen(name) + 1);
	}
	return done;
}

int perf_map__update(struct perf_map *pm)
{
	struct stat st;
	if (stat(pm->path, &st))
		return -errno;
	bool replaced = st.st_dev != pm->dev || st.st_ino != pm->ino || (uint64_t)st.st_size < pm->parsed;
	/* Against the size read last, not the bytes parsed: a file ending in a partial line is not read (and its
	 * table sorted) again at every lookup until it grows. */
	if (!replaced && (uint64_t)st.st_size == pm->size)
		return 0;
	int fd = open(pm->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (replaced) {
		pm->n = 0;
		pm->parsed = 0;
		buf__reset(&pm->names);
		pm->dev = st.st_dev;
		pm->ino = st.st_ino;
	}
	struct buf b = {0};
	char tmp[65536];
	ssize_t r;
	while ((r = pread(fd, tmp, sizeof(tmp), (off_t)(pm->parsed + b.len))) > 0)
		buf__append(&b, tmp, (size_t)r);
	close(fd);
	if (b.oom) {
		buf__free(&b);
		return -ENOMEM;
	}
	pm->size = pm->parsed + b.len;
	pm->parsed += pm_parse(pm, b.p ? b.p : "", b.len);
	buf__free(&b);
	if (pm->n) /* e is NULL while no line was read (a JIT's new, empty file): qsort() takes no NULL */
		qsort(pm->e, pm->n, sizeof(*pm->e), pm_cmp);
	return 1;
}

struct perf_map *perf_map__load(const char *path, int *err)
{
	struct perf_map *pm = calloc(1, sizeof(*pm));
	int rc = -ENOMEM;
	if (!pm || !(pm->path = strdup(path)))
		goto fail;
	rc = perf_map__update(pm);
	if (rc < 0)
		goto fail;
	if (err)
		*err = 0;
	return pm;
fail:
	perf_map__free(pm);
	if (err)
		*err = rc;
	return NULL;
}

void perf_map__free(struct perf_map *pm)
{
	if (!pm)
		return;
	free(pm->path);
	free(pm->e);
	buf__free(&pm->names);
	free(pm);
}

size_t perf_map__count(const struct perf_map *pm)
{
	return pm ? pm->n : 0;
}

static uint64_t pm_size(const void *e)
{
	return ((const struct pm_entry *)e)->size;
}

const char *perf_map__find(const struct perf_map *pm, uint64_t addr, uint64_t *offset)
{
	if (!pm || !pm->n)
		return NULL;
	/* Walking back from the last start <= addr meets the newest line for a start first. */
	int64_t i = addrtab_enclosing(pm->e, pm->n, sizeof(*pm->e), addr, pm_size);
	if (i < 0)
		return NULL;
	if (offset)
		*offset = addr - pm->e[i].start;
	return pm->names.p + pm->e[i].name;
}
