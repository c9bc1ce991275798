/* SPDX-License-Identifier: BSD-2-Clause */
/* perf map files: the symbols a JIT compiler (V8, the JVM with perf-map-agent, CPython 3.12's perf trampoline,
 * LuaJIT, ...) writes for the code it generates, one line "START SIZE NAME" each, in hex with or without "0x"
 * (the format of the Linux perf tool, tools/perf/Documentation/jit-interface.txt).
 *
 * A perf map is read once and then read again when the file grew (only the new, complete lines) or was replaced
 * (another inode, or shorter). A later line for the same start wins: the JIT reused the code. Names are kept as
 * written. */
#ifndef LOUPE_PERFMAP_H
#define LOUPE_PERFMAP_H
#include <stddef.h>
#include <stdint.h>

struct perf_map;

/* The perf map at path (its path is kept for perf_map__update()); NULL with *err = -errno (err may be NULL). */
struct perf_map *perf_map__load(const char *path, int *err);
/* Read the file again if it grew (only the new lines) or was replaced; 1 if it changed, 0 if not, -errno. */
int perf_map__update(struct perf_map *pm);
void perf_map__free(struct perf_map *pm);
size_t perf_map__count(const struct perf_map *pm);
/* The name of the entry holding addr and addr's offset in it (offset may be NULL), or NULL. The name lives until
 * the next perf_map__update() or perf_map__free(). */
const char *perf_map__find(const struct perf_map *pm, uint64_t addr, uint64_t *offset);

#endif
