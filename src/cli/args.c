// SPDX-License-Identifier: BSD-2-Clause
/* What the commands' option parsers share (src/cli/cli.h): the usage-error line, ranges, and the options
 * several commands take. */
#include "cli/cli.h"
#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "loupe %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see 'loupe %s --help')\n", cmd);
	va_end(ap);
}

int parse_long_in(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(s, &end, 10);
	if (!*s || *end || errno || n < lo || n > hi)
		return -EINVAL;
	*out = n;
	return 0;
}

int parse_tracepoints_opt(const char *cmd, const char *arg, const char **out)
{
	if (strcmp(arg, "auto") && strcmp(arg, "tp_btf") && strcmp(arg, "raw_tp")) {
		usage_error(cmd, "bad --tracepoints '%s': expected auto, tp_btf or raw_tp", arg);
		return -EINVAL;
	}
	*out = strcmp(arg, "auto") ? arg : NULL;
	return 0;
}

int parse_log_level_opt(const char *cmd, const char *arg)
{
	enum log_level lvl;
	if (log_level_parse(arg, &lvl)) {
		usage_error(cmd, "bad --log-level '%s': expected debug, info, warn or error", arg);
		return -EINVAL;
	}
	log_set_level(lvl);
	return 0;
}
