// SPDX-License-Identifier: BSD-2-Clause
/* loupe: command dispatch (bpftool-style table of commands; each parses its own options). */
#include "version.h"
#include "cli/cli.h"
#include "lib/util.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
	"Usage: loupe [COMMAND] [OPTIONS]\n"
	"\n"
	"Loupe is an eBPF system and request profiler for a web API and its PostgreSQL server.\n"
	"\n"
	"Commands:\n"
	"  run      run the daemon: metrics and health over HTTP (the default command)\n"
	"  check    report what this kernel supports and which features will run\n"
	"  profile  profile a service or a process for a while and write pprof, folded stacks or an SVG\n"
	"\n"
	"Options:\n"
	"  -h, --help     show this help ('loupe COMMAND --help' for a command's options)\n"
	"  -V, --version  show the version\n";

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"run", cmd_run},
	{"check", cmd_check},
	{"profile", cmd_profile},
};

int main(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
			fputs(usage, stdout);
			return 0;
		}
		if (argc >= 2 && (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version"))) {
			printf("loupe %s (%s)\n", LOUPE_VERSION, LOUPE_COMMIT);
			return 0;
		}
		return cmd_run(argc, argv); /* `loupe [run options]` */
	}
	if (!strcmp(argv[1], "help")) {
		fputs(usage, stdout);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "loupe: unknown command '%s' (see 'loupe --help')\n", argv[1]);
	return EXIT_USAGE;
}
