/* SPDX-License-Identifier: BSD-2-Clause */
/* HTTP basic authentication against the bcrypt hashes of a web config's basic_auth_users (src/server/webconfig.h).
 * bcrypt is slow on purpose (cost 10: 50-100 ms here) and the HTTP server has one thread, so checks that passed are
 * cached (Prometheus sends the same credentials every scrape, as exporter-toolkit also assumes), and the time spent
 * on uncached checks is budgeted: a password-guessing client gets 429s instead of stalling /healthz for others.
 * Thread-safe. */
#ifndef LOUPE_BASIC_AUTH_H
#define LOUPE_BASIC_AUTH_H
#include <stdint.h>

struct web_config;
struct basic_auth;

enum auth_result {
	AUTH_OK,
	AUTH_FAILED,	/* unknown user or wrong password (the same answer, after the same work) */
	AUTH_THROTTLED, /* the budget of uncached checks is spent: try again after *retry_s */
};

/* NULL (errno ENOMEM) on failure; wc must outlive it and have users. */
struct basic_auth *basic_auth__new(const struct web_config *wc);
void basic_auth__free(struct basic_auth *ba);
/* Check user and password. *retry_s is set with AUTH_THROTTLED. */
enum auth_result basic_auth__check(struct basic_auth *ba, const char *user, const char *password, unsigned *retry_s);

#endif
