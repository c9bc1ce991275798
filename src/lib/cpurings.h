/* SPDX-License-Identifier: BSD-2-Clause */
/* Per-CPU BPF ring buffers read as one stream, in the order of a timestamp that every record carries.
 *
 * A BPF program that writes each record to its own CPU's ring (an array of ring buffer maps indexed by
 * bpf_get_smp_processor_id()) never contends for one ring's lock and producer position with other CPUs. The price
 * is order: a task that moves between CPUs leaves its records in two rings. cpurings__consume() merges the rings by
 * the records' timestamps (CLOCK_MONOTONIC, bpf_ktime_get_ns()) and hands on only records stamped before the pass
 * began; later ones wait for the next pass. So two records of one thread always come out in the order it made
 * them: the second is stamped after the first was committed, and if the first was not yet visible when the pass
 * began, the second is stamped after the pass began. */
#ifndef LOUPE_CPURINGS_H
#define LOUPE_CPURINGS_H

#include <stddef.h>
#include <stdint.h>

struct cpurings;

/* A record: its bytes (after the ring's own header) and size. A negative return stops the pass (the record is
 * consumed) and is returned by cpurings__consume(). */
typedef int (*cpurings_cb)(void *ctx, void *data, size_t size);

/* Creates n ring buffer maps of ring_bytes each (a power of two, a multiple of the page size) and maps them. Each
 * record holds its u64 timestamp at ts_off (a record too short for it counts as stamped 0: handed on at once).
 * Returns NULL with errno set. */
struct cpurings *cpurings__new(unsigned n, size_t ring_bytes, size_t ts_off, cpurings_cb cb, void *ctx);
/* A ring's fd: the inner map of the BPF object's array of rings, before it is loaded
 * (bpf_map__set_inner_map_fd: the kernel takes the rings' type and size from it). */
int cpurings__inner_fd(const struct cpurings *r);
/* Stores ring i at key i of the loaded array of rings outer_fd: 0 or a negative errno. */
int cpurings__publish(struct cpurings *r, int outer_fd);
/* Hands on every record stamped before now, merged by timestamp: the number handed on, or the callback's error. */
int cpurings__consume(struct cpurings *r);
/* An epoll fd that is readable when the BPF side has woken any ring (for the daemon's own epoll). */
int cpurings__epoll_fd(const struct cpurings *r);
void cpurings__free(struct cpurings *r);

/* The size of each of n CPUs' rings: total_bytes shared out (a power of two each), within [min_bytes, max_bytes]. */
size_t cpurings_size(unsigned n, size_t total_bytes, size_t min_bytes, size_t max_bytes);

#endif
