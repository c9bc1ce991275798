/* SPDX-License-Identifier: BSD-2-Clause */
/* Small helpers shared by every userspace module: a growable byte buffer, file reads, time. */
#ifndef LOUPE_UTIL_H
#define LOUPE_UTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Growable buffer. On allocation failure it latches `oom` and later appends are no-ops, so callers check once. */
struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

void buf__free(struct buf *b);
void buf__reset(struct buf *b);
void buf__append(struct buf *b, const void *data, size_t n);
void buf__puts(struct buf *b, const char *s);
void buf__printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf__vprintf(struct buf *b, const char *fmt, va_list ap);
/* Append s as the body of a JSON string (without the quotes). */
void buf__json_str(struct buf *b, const char *s);

/* Read a whole small file (procfs, sysfs) into a NUL-terminated heap string; returns length or -errno. */
long read_file(const char *path, char **out);
/* Read a file's first line into dst (newline stripped); 0 or -errno. */
int read_line(const char *path, char *dst, size_t n);

/* Time units: every conversion in userspace goes through these (no bare 1e9). */
#define NSEC_PER_SEC 1000000000ull
#define NSEC_PER_MSEC 1000000ull
#define NSEC_PER_USEC 1000ull
#define MSEC_PER_SEC 1000ull

static inline double ns_to_seconds(uint64_t ns)
{
	return (double)ns / (double)NSEC_PER_SEC;
}

uint64_t now_ns(int clock_id);
/* Gzip-compress src (zlib, gzip wrapper); 0 or -ENOMEM/-EIO. */
int gzip_buf(const char *src, size_t n, struct buf *out);

#endif
