/* SPDX-License-Identifier: BSD-2-Clause */
/* CHECK(c): an invariant of a fuzz target; when it fails, the condition and its place are printed and the target
 * aborts, which libFuzzer reports as a crash with the input saved. Shared by fuzz.h and fuzz_file.h. */
#ifndef LOUPE_FUZZ_CHECK_H
#define LOUPE_FUZZ_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                                             \
	do {                                                                                                 \
		if (!(c)) {                                                                                  \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);          \
			abort();                                                                             \
		}                                                                                            \
	} while (0)

#endif
