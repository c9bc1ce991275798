// SPDX-License-Identifier: BSD-2-Clause
/* Per-CPU BPF ring buffers merged by timestamp (cpurings.h). Each ring is read through its own mappings, as the
 * kernel lays a ring buffer map out for mmap() (kernel/bpf/ringbuf.c): the consumer position on a page we may
 * write, then the producer position on a read-only page followed by the data pages, mapped twice in a row so that
 * a record that wraps around is contiguous. A record is an 8-byte header (its length, with the busy and discard
 * bits, and a page offset) and its bytes, padded to 8. libbpf's ring_buffer reads rings one after the other; a
 * merge must look at each ring's next record before it takes one, hence this reader. */
#include "lib/cpurings.h"
#include "lib/util.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct ring {
	int fd;
	unsigned long *consumer; /* the consumer page: our position, read by the BPF side */
	const unsigned long *producer;
	const uint8_t *data;
	size_t mask;
	uint64_t pos, prod;	/* consumer position (ours), producer position seen at the pass's start */
	uint64_t committed;	/* the position last stored in *consumer */
	const uint8_t *rec;	/* the record at pos, once found */
	uint32_t len;
	uint64_t next, ts;
};

struct cpurings {
	struct ring *rings;
	unsigned n;
	size_t map_bytes, page, ts_off;
	int epfd;
	cpurings_cb cb;
	void *ctx;
	unsigned *heap; /* rings whose next record may be handed on, a min-heap by its timestamp */
	unsigned nheap;
};

size_t cpurings_size(unsigned n, size_t total_bytes, size_t min_bytes, size_t max_bytes)
{
	size_t b = max_bytes;
	while (b > min_bytes && b * (n ? n : 1) > total_bytes)
		b >>= 1;
	return b;
}

void cpurings__free(struct cpurings *r)
{
	if (!r)
		return;
	for (unsigned i = 0; r->rings && i < r->n; i++) {
		struct ring *g = &r->rings[i];
		if (g->consumer)
			munmap(g->consumer, r->page);
		if (g->producer)
			munmap((void *)g->producer, r->map_bytes);
		if (g->fd >= 0)
			close(g->fd);
	}
	if (r->epfd >= 0)
		close(r->epfd);
	free(r->rings);
	free(r->heap);
	free(r);
}

struct cpurings *cpurings__new(unsigned n, size_t ring_bytes, size_t ts_off, cpurings_cb cb, void *ctx)
{
	struct cpurings *r = calloc(1, sizeof(*r));
	int err = 0;
	if (!r)
		return NULL;
	r->epfd = -1;
	r->n = n;
	r->page = (size_t)sysconf(_SC_PAGESIZE);
	r->map_bytes = r->page + 2 * ring_bytes;
	r->ts_off = ts_off;
	r->cb = cb;
	r->ctx = ctx;
	if (!n || ring_bytes < r->page || (ring_bytes & (ring_bytes - 1))) {
		free(r);
		errno = EINVAL;
		return NULL;
	}
	r->rings = calloc(n, sizeof(*r->rings));
	r->heap = calloc(n, sizeof(*r->heap));
	if (!r->rings || !r->heap) {
		err = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++)
		r->rings[i].fd = -1;
	if ((r->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		err = -errno;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		struct ring *g = &r->rings[i];
		void *m;
		if ((g->fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "cpu_ring", 0, 0, (uint32_t)ring_bytes, NULL)) < 0) {
			err = g->fd;
			g->fd = -1;
			goto fail;
		}
		if ((m = mmap(NULL, r->page, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0)) == MAP_FAILED) {
			err = -errno;
			goto fail;
		}
		g->consumer = m;
		if ((m = mmap(NULL, r->map_bytes, PROT_READ, MAP_SHARED, g->fd, (off_t)r->page)) == MAP_FAILED) {
			err = -errno;
			goto fail;
		}
		g->producer = m;
		g->data = (const uint8_t *)m + r->page;
		g->mask = ring_bytes - 1;
		g->pos = g->committed = __atomic_load_n(g->consumer, __ATOMIC_ACQUIRE);
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
		if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, g->fd, &ev)) {
			err = -errno;
			goto fail;
		}
	}
	return r;
fail:
	cpurings__free(r);
	errno = -err;
	return NULL;
}

int cpurings__inner_fd(const struct cpurings *r)
{
	return r->rings[0].fd;
}

int cpurings__publish(struct cpurings *r, int outer_fd)
{
	for (unsigned i = 0; i < r->n; i++)
		if (bpf_map_update_elem(outer_fd, &i, &r->rings[i].fd, BPF_ANY))
			return -errno;
	return 0;
}

int cpurings__epoll_fd(const struct cpurings *r)
{
	return r->epfd;
}

/* Finds ring g's next record to hand on in this pass (skipping discarded ones): false at the end of what the pass
 * saw, at a record still being written, or at one stamped after t0. */
static bool ring_head(const struct cpurings *r, struct ring *g, uint64_t t0)
{
	while (g->pos < g->prod) {
		const uint32_t *hdr = (const uint32_t *)(g->data + (g->pos & g->mask));
		uint32_t len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
		if (len & BPF_RINGBUF_BUSY_BIT)
			return false;
		uint32_t n = len & ~(uint32_t)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
		uint64_t next = g->pos + ((BPF_RINGBUF_HDR_SZ + (uint64_t)n + 7) & ~7ULL);
		if (len & BPF_RINGBUF_DISCARD_BIT) {
			g->pos = next;
			continue;
		}
		g->rec = (const uint8_t *)hdr + BPF_RINGBUF_HDR_SZ;
		g->len = n;
		g->next = next;
		g->ts = 0;
		if (n >= r->ts_off + sizeof(uint64_t))
			memcpy(&g->ts, g->rec + r->ts_off, sizeof(g->ts));
		return g->ts <= t0;
	}
	return false;
}

static void commit(struct ring *g)
{
	if (g->pos != g->committed) {
		__atomic_store_n(g->consumer, g->pos, __ATOMIC_RELEASE);
		g->committed = g->pos;
	}
}

static bool heap_less(const struct cpurings *r, unsigned a, unsigned b)
{
	return r->rings[r->heap[a]].ts < r->rings[r->heap[b]].ts;
}

static void heap_swap(struct cpurings *r, unsigned a, unsigned b)
{
	unsigned t = r->heap[a];
	r->heap[a] = r->heap[b];
	r->heap[b] = t;
}

static void sift_down(struct cpurings *r, unsigned i)
{
	for (;;) {
		unsigned l = 2 * i + 1, m = i;
		if (l < r->nheap && heap_less(r, l, m))
			m = l;
		if (l + 1 < r->nheap && heap_less(r, l + 1, m))
			m = l + 1;
		if (m == i)
			return;
		heap_swap(r, i, m);
		i = m;
	}
}

static void sift_up(struct cpurings *r, unsigned i)
{
	while (i && heap_less(r, i, (i - 1) / 2)) {
		heap_swap(r, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

int cpurings__consume(struct cpurings *r)
{
	/* The producer positions are read after t0: a record committed before t0 is seen. */
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	int handed = 0, err = 0;
	r->nheap = 0;
	for (unsigned i = 0; i < r->n; i++) {
		struct ring *g = &r->rings[i];
		g->prod = __atomic_load_n(g->producer, __ATOMIC_ACQUIRE);
		if (ring_head(r, g, t0)) {
			r->heap[r->nheap++] = i;
			sift_up(r, r->nheap - 1);
		} else {
			commit(g); /* discarded records skipped */
		}
	}
	while (r->nheap) {
		struct ring *g = &r->rings[r->heap[0]];
		int rc = r->cb(r->ctx, (void *)g->rec, g->len);
		g->pos = g->next;
		handed++;
		if (rc < 0) {
			err = rc;
			break;
		}
		if (ring_head(r, g, t0)) {
			sift_down(r, 0);
		} else {
			commit(g);
			r->heap[0] = r->heap[--r->nheap];
			sift_down(r, 0);
		}
	}
	for (unsigned i = 0; i < r->n; i++)
		commit(&r->rings[i]);
	return err ? err : handed;
}
