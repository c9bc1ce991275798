/* SPDX-License-Identifier: GPL-2.0 */
/* Map helpers shared by the BPF programs. */
#ifndef LOUPE_MAPS_BPF_H
#define LOUPE_MAPS_BPF_H
#include <bpf/bpf_helpers.h>

/* Create key's entry from init unless it exists (BPF_NOEXIST: on a race, the entry another CPU created first wins),
 * then look it up: the entry, or NULL when the map is full. *created says whether this call made it. For the cold
 * path after a lookup missed; a per-CPU map's entry is this CPU's slot. */
static __always_inline void *map_try_init(void *map, const void *key, const void *init, bool *created)
{
	*created = !bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/* key's entry, created from init when absent: NULL only when the map is full. */
static __always_inline void *map_lookup_or_try_init(void *map, const void *key, const void *init)
{
	void *v = bpf_map_lookup_elem(map, key);
	bool created;
	return v ? v : map_try_init(map, key, init, &created);
}

#endif
