/* SPDX-License-Identifier: BSD-2-Clause */
/* Test helper shared by the unit tests that build profiles: add a stack written root first as "main;a;b" (the
 * way people write stacks), stored leaf first as profile__add() wants. Returns profile__add()'s result. */
#ifndef LOUPE_TEST_PROFILE_STACKS_H
#define LOUPE_TEST_PROFILE_STACKS_H
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "profile/profile.h"

static int add_stack(struct profile *p, const char *svc, const char *thr, const char *stack, uint64_t count,
		     uint64_t ns)
{
	char copy[1024];
	struct profile_frame f[64];
	size_t n = 0;
	snprintf(copy, sizeof(copy), "%s", stack);
	for (char *save = NULL, *tok = strtok_r(copy, ";", &save); tok && n < 64; tok = strtok_r(NULL, ";", &save))
		f[n++] = (struct profile_frame){ .name = tok };
	for (size_t i = 0; i < n / 2; i++) {
		struct profile_frame t = f[i];
		f[i] = f[n - 1 - i];
		f[n - 1 - i] = t;
	}
	return profile__add(p, svc, thr, f, n, count, ns);
}

#endif
