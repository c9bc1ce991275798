// SPDX-License-Identifier: BSD-2-Clause
/* Basic authentication (src/server/basic_auth.h): libxcrypt's crypt_rn() computes bcrypt ($2a$, $2b$, $2y$), its
 * result is compared with the stored hash in constant time, and passed checks are cached. */
#include "server/basic_auth.h"
#include "server/webconfig.h"
#include "lib/util.h"

#include <crypt.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Credentials that passed, remembered by a keyed digest (HMAC-SHA-256 under a key drawn at start): Prometheus
 * scrapes every 5-15 s with the same credentials, and a bcrypt check costs 50-100 ms of the server's one thread.
 * The digest, not the password, is kept, and its key makes it useless without the process's memory. A few
 * scrapers and users fit; when full, the oldest entry goes. Failures are not cached: each guess costs bcrypt. */
#define CACHE_SIZE 64
#define DIGEST_LEN 32
/* Uncached checks may take half of the server thread's time on average (the budget refills at 0.5 s per second),
 * with at most BUDGET_MAX_NS saved up: beyond, AUTH_THROTTLED (429) until the budget is positive again. */
#define BUDGET_MAX_NS (1 * NSEC_PER_SEC)
#define BUDGET_REFILL_DIV 2

struct basic_auth {
	const struct web_config *wc;
	pthread_mutex_t lock;
	struct crypt_data *cd; /* crypt_rn's work area (32 KiB): one, under the lock */
	uint8_t key[DIGEST_LEN];
	uint8_t cache[CACHE_SIZE][DIGEST_LEN];
	unsigned ncached, next;
	int64_t budget_ns;
	uint64_t budget_at_ns;
	/* Unknown users are checked against this setting, at the first user's cost, so that a wrong user name takes
	 * as long as a wrong password and user names cannot be found by timing (as exporter-toolkit does). */
	char dummy[32];
};

struct basic_auth *basic_auth__new(const struct web_config *wc)
{
	struct basic_auth *ba = calloc(1, sizeof(*ba));
	if (!ba || !(ba->cd = calloc(1, sizeof(*ba->cd))) ||
	    gnutls_rnd(GNUTLS_RND_RANDOM, ba->key, sizeof(ba->key)) < 0) {
		if (ba)
			free(ba->cd);
		free(ba);
		errno = ENOMEM;
		return NULL;
	}
	ba->wc = wc;
	pthread_mutex_init(&ba->lock, NULL);
	ba->budget_ns = (int64_t)BUDGET_MAX_NS;
	ba->budget_at_ns = now_ns(CLOCK_MONOTONIC);
	/* A valid bcrypt salt (22 characters, the last one of ".Oeu": its low 4 bits are unused). */
	snprintf(ba->dummy, sizeof(ba->dummy), "$2b$%.2s$loupeloupeloupeloupelu",
		 wc->nusers ? wc->users[0].hash + 4 : "10");
	return ba;
}

void basic_auth__free(struct basic_auth *ba)
{
	if (!ba)
		return;
	pthread_mutex_destroy(&ba->lock);
	explicit_bzero(ba->cd, sizeof(*ba->cd));
	free(ba->cd);
	explicit_bzero(ba, sizeof(*ba));
	free(ba);
}

/* Equal bytes, in a time that depends on n only. */
static bool ct_equal(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char d = 0;
	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

/* HMAC-SHA-256(key, user NUL password): user names hold no NUL (RFC 7617), so no two pairs share an input. */
static int digest(struct basic_auth *ba, const char *user, const char *password, uint8_t out[DIGEST_LEN])
{
	size_t ul = strlen(user), pl = strlen(password);
	char *in = malloc(ul + 1 + pl);
	if (!in)
		return -ENOMEM;
	memcpy(in, user, ul + 1);
	memcpy(in + ul + 1, password, pl);
	int rc = gnutls_hmac_fast(GNUTLS_MAC_SHA256, ba->key, sizeof(ba->key), in, ul + 1 + pl, out);
	explicit_bzero(in, ul + 1 + pl);
	free(in);
	return rc < 0 ? -EIO : 0;
}

enum auth_result basic_auth__check(struct basic_auth *ba, const char *user, const char *password, unsigned *retry_s)
{
	uint8_t d[DIGEST_LEN];
	enum auth_result res = AUTH_FAILED;
	if (digest(ba, user, password, d))
		return AUTH_FAILED;
	pthread_mutex_lock(&ba->lock);
	bool hit = false;
	for (unsigned i = 0; i < ba->ncached; i++)
		hit |= ct_equal(ba->cache[i], d, DIGEST_LEN);
	if (hit) {
		res = AUTH_OK;
		goto out;
	}
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	ba->budget_ns += (int64_t)((now - ba->budget_at_ns) / BUDGET_REFILL_DIV);
	if (ba->budget_ns > (int64_t)BUDGET_MAX_NS)
		ba->budget_ns = (int64_t)BUDGET_MAX_NS;
	ba->budget_at_ns = now;
	if (ba->budget_ns <= 0) {
		uint64_t wait = (uint64_t)-ba->budget_ns * BUDGET_REFILL_DIV;
		*retry_s = (unsigned)((wait + NSEC_PER_SEC - 1) / NSEC_PER_SEC);
		if (!*retry_s)
			*retry_s = 1;
		res = AUTH_THROTTLED;
		goto out;
	}
	const char *hash = NULL;
	for (size_t i = 0; i < ba->wc->nusers; i++)
		if (!strcmp(ba->wc->users[i].name, user))
			hash = ba->wc->users[i].hash;
	const char *r = crypt_rn(password, hash ? hash : ba->dummy, ba->cd, sizeof(*ba->cd));
	bool ok = hash && r && strlen(r) == strlen(hash) && ct_equal(r, hash, strlen(hash));
	/* Charged in full, while the refill runs on through it: on average, checks take half of the time. */
	ba->budget_ns -= (int64_t)(now_ns(CLOCK_MONOTONIC) - now);
	if (ok) {
		memcpy(ba->cache[ba->next], d, DIGEST_LEN);
		ba->next = (ba->next + 1) % CACHE_SIZE;
		if (ba->ncached < CACHE_SIZE)
			ba->ncached++;
		res = AUTH_OK;
	}
out:
	pthread_mutex_unlock(&ba->lock);
	explicit_bzero(d, sizeof(d));
	return res;
}
