/* SPDX-License-Identifier: BSD-2-Clause */
/* Kernel symbols from /proc/kallsyms: text symbols (t T w W), sorted, found by binary search.
 *
 * kallsyms has no sizes: a function reaches the next symbol (data symbols count as ends, never as answers), and
 * the last one of a module or of the core kernel reaches at most 64 KiB. Several symbols at one address keep
 * one name: T before W before t before w, then the fewest leading underscores, then the shortest.
 * Module symbols have the module as their module, in brackets ("[nf_tables]"; the core kernel is "[kernel]").
 * Without CAP_SYSLOG (or with kptr_restrict=2) every address reads 0: the table is then "restricted" and
 * resolves nothing.
 *
 * Cost (symbolize.h has the method): a lookup in 121 911 entries 130-150 ns; a load of /proc/kallsyms
 * (122k lines; ~45 ms of it is the kernel writing the text) 105-130 ms. */
#ifndef LOUPE_KALLSYMS_H
#define LOUPE_KALLSYMS_H
#include <stddef.h>
#include <stdint.h>

struct ksyms;

/* The table of the kallsyms file at path; NULL with *err = -errno (err may be NULL). */
struct ksyms *ksyms__load(const char *path, int *err);
/* The table of kallsyms text[0..n); NULL on allocation failure. */
struct ksyms *ksyms__parse(const char *text, size_t n);
void ksyms__free(struct ksyms *ks);
size_t ksyms__count(const struct ksyms *ks);
/* 1 when every address read 0 (kptr_restrict, no CAP_SYSLOG): nothing can be resolved. */
int ksyms__restricted(const struct ksyms *ks);
/* Name of the kernel function holding addr, its module ("[kernel]" or "[mod]") and addr's offset in it; NULL
 * when none (module and offset may be NULL). The strings live as long as ks. */
const char *ksyms__find(const struct ksyms *ks, uint64_t addr, const char **module, uint64_t *offset);

#endif
