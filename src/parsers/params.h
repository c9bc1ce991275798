/* SPDX-License-Identifier: BSD-2-Clause */
/* Strict parsers of the values people type into loupe: query parameters of the HTTP endpoints (decimals,
 * durations, names, free text) and the --listen address. Each takes the value with its length, so that a NUL
 * inside it (from %00) is seen and refused rather than cutting the value short. No sign, no space, no leading
 * '+', no overflow: a value is the whole string or it is refused. Pure functions, fuzzed (tests/fuzz/fuzz_params.c). */
#ifndef LOUPE_PARAMS_H
#define LOUPE_PARAMS_H
#include <stdbool.h>
#include <stddef.h>

/* A decimal in [min, max]: 1-10 ASCII digits and nothing else. 0 or -EINVAL (not a decimal) or -ERANGE. */
int param_decimal(const char *v, size_t len, unsigned long min, unsigned long max, unsigned long *out);
/* A duration in seconds in [min_s, max_s]: digits, then optionally 's' (seconds) or 'm' (minutes). 0, -EINVAL
 * or -ERANGE. */
int param_duration(const char *v, size_t len, unsigned long min_s, unsigned long max_s, unsigned long *out);
/* A name: 1..maxlen of [A-Za-z0-9_.-] (service names, as --target accepts them). */
bool param_name(const char *v, size_t len, size_t maxlen);
/* Free text: 1..maxlen bytes, none of them a control character (NUL, CR, LF, DEL...). */
bool param_text(const char *v, size_t len, size_t maxlen);
/* One of the words of a NULL-terminated list: its index, or -1. */
int param_choice(const char *v, size_t len, const char *const *words);

/* ADDR:PORT or [IPV6]:PORT (ADDR may be empty: every address): host into host (without brackets), port 1-65535.
 * 0, or -EINVAL with a one-line reason in err. */
int listen_addr_parse(const char *addr, char *host, size_t hostlen, unsigned *port, char *err, size_t errlen);

#endif
