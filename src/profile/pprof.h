/* SPDX-License-Identifier: BSD-2-Clause */
/* pprof output: a profile (profile.h) encoded as perftools.profiles.Profile (proto/profile.proto, packed by
 * protobuf-c) and gzip-compressed, as `go tool pprof`, Pyroscope and Parca read it and as Go's net/http/pprof
 * serves it.
 *
 * What loupe writes:
 *  - sample_type: CPU profiles [samples/count, cpu/nanoseconds]; off-CPU profiles
 *    [samples/count, off_cpu/nanoseconds] (the count is the number of blocking episodes). Every sample carries
 *    both values, in that order; default_sample_type names the second (cpu or off_cpu), the one worth reading.
 *  - period_type: cpu/nanoseconds with period 1e9/hz (CPU); off_cpu/nanoseconds with period 1 (off-CPU: every
 *    block over the threshold is recorded, nothing is sampled).
 *  - one function per distinct frame name (name = system_name), one location per function with one line, and
 *    the location's mapping when the frame's module (its file name) is known: one mapping per module, with
 *    has_functions set (names are already symbolised). Addresses are 0: loupe ships names, not addresses.
 *  - a sample per distinct (service, thread, stack); location_id leaf first; string labels service_name and
 *    thread_name (left out when empty).
 *  - string_table[0] == "", every string once; time_nanos and duration_nanos from profile__set_time(); a
 *    comment when samples were folded into [other] by the store's stack limit. */
#ifndef LOUPE_PPROF_H
#define LOUPE_PPROF_H
#include "profile/profile.h"
#include "lib/util.h"

/* Encode p into out (replacing its contents) as gzip-compressed pprof. Returns 0, -EINVAL, -ENOMEM or -EIO (zlib). */
int pprof_encode(const struct profile *p, struct buf *out);

#endif
