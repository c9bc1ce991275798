/* SPDX-License-Identifier: BSD-2-Clause */
/* Direction of a captured syscall's bytes, seen from the watched process: shared by the protocol parsers. */
#ifndef LOUPE_FLOW_H
#define LOUPE_FLOW_H

enum flow_dir {
	FLOW_IN,  /* bytes the process read: read, recv* */
	FLOW_OUT, /* bytes the process wrote: write, send* */
};

#endif
