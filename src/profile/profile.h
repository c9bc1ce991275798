/* SPDX-License-Identifier: BSD-2-Clause */
/* The profile store: CPU or off-CPU samples aggregated by stack, in userspace, ready for the output formats
 * (pprof in pprof.h, folded stacks here, SVG flame graphs in flamegraph.h).
 *
 * A profile holds one kind of samples. Each distinct key (service, thread name, stack of frame names) carries two
 * values: a sample count and nanoseconds. A CPU sampler adds count 1 and ns = one period (1e9 / hz) per sample;
 * an off-CPU tracer adds count 1 and the time the thread was blocked. Adding the same key again sums the values.
 *
 * Frames are passed leaf first (the innermost function first, as bpf_get_stack() returns them) and are kept in
 * that order; outputs that read root first (folded, flame graphs) reverse them. A frame is identified by its
 * name: two frames with the same name are one function. The caller symbolises and redacts before adding: a name
 * is stored as given, so it must already be what may leave the agent (DESIGN.md section 3). A NULL or empty
 * frame name is stored as "[unknown]", and so is a stack with no frame; NULL service or thread is "".
 *
 * Memory is bounded: past the stack limit (profile__set_max_stacks(), default PROFILE_MAX_STACKS) a sample of a
 * new stack is counted under the stack [PROFILE_OTHER] of its service with thread PROFILE_OTHER, so totals stay
 * exact, and profile__dropped() counts those samples. Stacks deeper than PROFILE_MAX_DEPTH keep their
 * PROFILE_MAX_DEPTH innermost frames.
 *
 * A profile is not thread-safe: one owner adds, and readers run after adding stopped (or under the owner's lock).
 * Functions returning int give 0 or a negative errno; free functions accept NULL. */
#ifndef LOUPE_PROFILE_H
#define LOUPE_PROFILE_H
#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/util.h"

#define PROFILE_MAX_DEPTH 256
#define PROFILE_MAX_STACKS 65536
#define PROFILE_UNKNOWN "[unknown]"
#define PROFILE_OTHER "[other]"

enum profile_kind {
	PROFILE_CPU,	/* on-CPU samples of a perf_event clock */
	PROFILE_OFFCPU,	/* time blocked off-CPU, from sched_switch */
};

/* Which value an output shows. DEFAULT is the kind's natural one: the sample count for CPU profiles (what
 * flame graph tools expect of sampled stacks), nanoseconds for off-CPU profiles (blocked time is the point). */
enum profile_value {
	PROFILE_VALUE_DEFAULT,
	PROFILE_VALUE_COUNT,
	PROFILE_VALUE_NS,
};

/* Extra leading frames in folded stacks and flame graphs. */
enum {
	PROFILE_FOLD_SERVICE = 1 << 0,	/* the service name as the first (root) frame */
	PROFILE_FOLD_THREAD = 1 << 1,	/* the thread name next (after the service, when both are asked) */
};

struct profile_frame {
	const char *name;	/* symbol, or "file+0xoffset" when unresolved; "module.qualname" for interpreted code */
	const char *module;	/* the mapping's file name (binary, library, "[kernel]"); NULL or "" when unknown */
	const char *file;	/* interpreted code (CPython): its source file's basename; NULL for native frames */
	uint32_t line;		/* with file: the function's first line */
};

/* A read-only view of one aggregated key; its pointers live as long as the profile. */
struct profile_sample {
	const char *service;
	const char *thread;
	const uint32_t *frames;	/* frame ids (profile__frame_name()), leaf first */
	uint32_t depth;		/* number of frames, >= 1 */
	uint64_t count;
	uint64_t ns;
};

struct profile;

/* hz: the sampling frequency of a CPU profile (the pprof period is 1e9 / hz ns); ignored (may be 0) off-CPU.
 * Returns NULL when out of memory or when a CPU profile has hz == 0. */
struct profile *profile__new(enum profile_kind kind, unsigned int hz);
void profile__free(struct profile *p);

/* Add count samples and ns nanoseconds to the key (service, thread, frames[0..n)), frames leaf first.
 * Returns 0, -EINVAL (p NULL, or frames NULL with n > 0) or -ENOMEM (the profile is unchanged for this sample). */
int profile__add(struct profile *p, const char *service, const char *thread, const struct profile_frame *frames,
		 size_t n, uint64_t count, uint64_t ns);

/* Add every key of src whose service equals service (NULL: all) into dst. Both must be of the same kind
 * (-EINVAL otherwise). */
int profile__merge(struct profile *dst, const struct profile *src, const char *service);
/* The same, keeping only the keys with a frame whose name focus matches (NULL: all), like pprof's -focus: the
 * stacks through the focused functions, whole. */
int profile__merge_focus(struct profile *dst, const struct profile *src, const char *service, const regex_t *focus);

/* The collection's start (Unix time, ns) and length, for pprof's time_nanos and duration_nanos and the flame
 * graph's subtitle. Both are 0 until set. */
void profile__set_time(struct profile *p, uint64_t start_unix_ns, uint64_t duration_ns);

/* Profiles kept per minute (unix seconds / 60): the first minute to merge so that minutes first..now cover the
 * last window_s seconds before now_s (up to a minute more), and no more than `slots` minutes. */
uint64_t profile__first_minute(uint64_t now_s, uint64_t window_s, unsigned slots);
/* Limit the number of distinct stacks (at least 1); samples of new stacks past it go to [other]. */
void profile__set_max_stacks(struct profile *p, size_t max_stacks);

enum profile_kind profile__kind(const struct profile *p);
unsigned int profile__hz(const struct profile *p);
/* CPU: 1e9 / hz, the ns one sample stands for. Off-CPU: 1 (every block over the threshold is recorded). */
uint64_t profile__period_ns(const struct profile *p);
uint64_t profile__start_ns(const struct profile *p);
uint64_t profile__duration_ns(const struct profile *p);
/* Resolve PROFILE_VALUE_DEFAULT for this profile's kind; other values come back unchanged. */
enum profile_value profile__value(const struct profile *p, enum profile_value v);

/* Distinct keys, readable by index 0..n-1 in the order they were first added. */
size_t profile__sample_count(const struct profile *p);
/* Fill *s with key i; -ERANGE past the end. */
int profile__sample(const struct profile *p, size_t i, struct profile_sample *s);
/* The value v (COUNT or NS; DEFAULT resolved for the profile's kind) of a sample. */
uint64_t profile__sample_value(const struct profile *p, const struct profile_sample *s, enum profile_value v);

/* Distinct frames (functions), ids 0..n-1. */
size_t profile__frame_count(const struct profile *p);
const char *profile__frame_name(const struct profile *p, uint32_t id);	/* NULL past the end */
const char *profile__frame_module(const struct profile *p, uint32_t id);	/* NULL when unknown */
/* An interpreted frame's source file basename, and its first line in *line (may be NULL); NULL for native ones. */
const char *profile__frame_file(const struct profile *p, uint32_t id, uint32_t *line);

/* Sums over all keys (either pointer may be NULL), and samples folded into [other] by the stack limit. */
void profile__totals(const struct profile *p, uint64_t *count, uint64_t *ns);
uint64_t profile__dropped(const struct profile *p);

/* Folded stacks (the format of Brendan Gregg's stackcollapse scripts, read by flamegraph.pl, speedscope,
 * inferno, Pyroscope): one line per distinct stack, "root;caller;...;leaf VALUE\n", root first. An interpreted
 * frame is written "module.qualname (file.py:LINE)" (its first line), which no native frame looks like. With
 * PROFILE_FOLD_SERVICE and/or PROFILE_FOLD_THREAD the service and/or thread name come first as frames (an empty
 * one is written PROFILE_UNKNOWN). Keys that render the same line are summed into one; lines are sorted by their
 * stack text (bytes, strcmp), and lines whose value is 0 are left out. In names, ';' (the separator) becomes ':'
 * and control characters become '?'; spaces stay (readers split at the last space). The text is appended to out.
 * Returns 0 or -ENOMEM. */
int profile__folded(const struct profile *p, enum profile_value v, unsigned int flags, struct buf *out);

#endif
