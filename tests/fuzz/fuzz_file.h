/* SPDX-License-Identifier: BSD-2-Clause */
/* For the targets of readers that take a path (or a pid) rather than bytes: the input is written to a memfd, read
 * through /proc/self/fd/N, so the real API runs unchanged; and seeds that are whole files copied from this machine.
 * Header-only, like fuzz.h. */
#ifndef LOUPE_FUZZ_FILE_H
#define LOUPE_FUZZ_FILE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_check.h"

/* One memfd per name, reused for every input of the process: its path in *path (/proc/self/fd/N). */
struct mfile {
	int fd;
	char path[64];
};

static inline void mfile_open(struct mfile *f, const char *name)
{
	if (f->path[0])
		return;
	f->fd = memfd_create(name, MFD_CLOEXEC);
	CHECK(f->fd >= 0);
	snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
}

/* The file's content becomes p[0..n) (a new inode is not needed: readers re-open the path). */
static inline void mfile_set(struct mfile *f, const void *p, size_t n)
{
	CHECK(ftruncate(f->fd, 0) == 0);
	CHECK(n == 0 || pwrite(f->fd, p, n, 0) == (ssize_t)n);
}

static inline void mfile_append(struct mfile *f, const void *p, size_t n)
{
	off_t end = lseek(f->fd, 0, SEEK_END);
	CHECK(end >= 0);
	CHECK(n == 0 || pwrite(f->fd, p, n, end) == (ssize_t)n);
}

/* ---- seeds ---- */

static inline void seed_bytes(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/seed-%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		return;
	fwrite(p, 1, n, f);
	fclose(f);
}

/* Up to max bytes of the file at path, on the heap (*n its length); NULL when unreadable. */
static inline uint8_t *slurp(const char *path, size_t max, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	uint8_t *b = malloc(max ? max : 1);
	*n = b ? fread(b, 1, max, f) : 0;
	fclose(f);
	return b;
}

#endif
