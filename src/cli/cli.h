/* SPDX-License-Identifier: BSD-2-Clause */
/* The commands (src/cli/main.c dispatches them) and what their option parsers share. Every command returns the
 * process exit status: 0, 1 when something failed (logged), 2 on bad usage (one line on stderr). */
#ifndef LOUPE_CLI_H
#define LOUPE_CLI_H
#include <stdbool.h>

int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_profile(int argc, char **argv);

#define EXIT_USAGE 2

/* "loupe CMD: <message> (see 'loupe CMD --help')" on stderr. */
void usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A whole-string decimal in [lo, hi] into *out: 0, or -EINVAL. */
int parse_long_in(const char *s, long lo, long hi, long *out);

/* Option values the commands share; on bad input each prints the usage error for cmd and returns -EINVAL. */
int parse_tracepoints_opt(const char *cmd, const char *arg, const char **out); /* auto (NULL), tp_btf, raw_tp */
int parse_log_level_opt(const char *cmd, const char *arg);			/* sets the log level */

#endif
