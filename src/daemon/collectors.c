// SPDX-License-Identifier: BSD-2-Clause
/* The collector table: adding a signal is adding a row. */
#include "daemon/collectors.h"

const struct collector *const collectors[] = {
	&targets_collector, /* first: owns target_svc, which the others share */
	&syscalls_collector,
	&tcp_collector,
	&payload_collector, /* after syscalls, whose object carries the capture */
	&pgusdt_collector, /* after targets: finds postgres binaries among running targets */
	&profiler_collector,
};
const int ncollectors = ARRAY_SIZE(collectors);
