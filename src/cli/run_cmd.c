// SPDX-License-Identifier: BSD-2-Clause
/* `loupe run`: the daemon's command line. Parse and check the options, then hand them to the daemon
 * (src/daemon/daemon.c). */
#include "cli/cli.h"
#include "daemon/daemon.h"
#include "core/loupe.h"
#include "lib/names.h"
#include "parsers/params.h"
#include "payload.h"
#include "server/webconfig.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char run_usage[] =
	"Usage: loupe run [OPTIONS]\n"
	"\n"
	"Run the profiler daemon: watch the target services and serve metrics over HTTP.\n"
	"\n"
	"Options:\n"
	"  -l, --listen ADDR:PORT     HTTP address (default 127.0.0.1:9476; [::1]:PORT for IPv6)\n"
	"      --web-config FILE      TLS and basic auth, in the web configuration format of Prometheus'\n"
	"                             exporter-toolkit (tls_server_config, basic_auth_users; docs/security.md).\n"
	"                             With basic_auth_users, every endpoint but /healthz and /readyz needs them\n"
	"      --auth-scope SCOPE     what needs basic auth: all (the default), profiles (/debug/pprof/*,\n"
	"                             /flamegraph.svg) or sessions (on-demand ?seconds= sessions only)\n"
	"      --sessions-per-minute N\n"
	"                             on-demand profiling sessions started per minute, all clients together;\n"
	"                             beyond, 429 with Retry-After (default 0: no limit)\n"
	"  -t, --target NAME=SEL      a service and how to find its processes; repeatable. SEL is one of\n"
	"                               comm:REGEX     process name (/proc/PID/comm, extended regex)\n"
	"                               cmdline:REGEX  command line, arguments joined by spaces\n"
	"                               exe:PATH       executable path\n"
	"                               pid:N          one process (and its children)\n"
	"                               cgroup:PATH    processes in a cgroup v2 subtree\n"
	"                             Default: postgres=comm:^postgres$, then api = processes whose program (argv[0],\n"
	"                             or the script or -m module python runs) is uvicorn, gunicorn or hypercorn.\n"
	"                             Leading comm:^name$ rules are applied in BPF at exec (from the first syscall).\n"
	"                             Children inherit their parent's service.\n"
	"      --tracepoints KIND     auto (default: tp_btf when the kernel supports it), tp_btf or raw_tp\n"
	"      --bpf-stats MODE       kernel BPF run-time statistics, which add two clock reads to every BPF program\n"
	"                             run: sampled (default: on 2 s in every 20 s), always, or off (then\n"
	"                             loupe_bpf_program_* are not exported); --no-bpf-stats = --bpf-stats off\n"
	"      --capture-bytes N      bytes of each socket read/write of a target captured for HTTP, WebSocket and\n"
	"                             PostgreSQL parsing (default 256, at most 1024, plus the last 64 of longer\n"
	"                             calls; 0 turns payload capture off)\n"
	"      --syscalls MODE        syscall latency, calls and errors of targets: sampled (the default: sys_enter\n"
	"                             and sys_exit attached for a 1 s window of every 10 s, the calls ending in a\n"
	"                             window counted and timed), on (every call, attached for good) or off (no\n"
	"                             syscall hook at all). HTTP, WebSocket and PostgreSQL signals do not depend on\n"
	"                             it (docs/performance.md)\n"
	"      --untimed-syscalls LIST\n"
	"                             syscalls of targets that are counted (loupe_syscall_untimed_total) but not\n"
	"                             timed, comma-separated (default " LOUPE_DEFAULT_UNTIMED ";\n"
	"                             none: time every syscall). Timing a call costs two clock reads and two\n"
	"                             task-storage lookups: +0.11 us over counting it (docs/performance.md)\n"
	"      --route-budget N       HTTP route templates per service before they collapse into _other (default\n"
	"                             100); only routes answered 1xx, 2xx or 5xx count (others: _unmatched)\n"
	"      --pg-usdt-query        also attach PostgreSQL's per-query USDT probes (query__start/done,\n"
	"                             transaction__commit): backend query durations and commits. Off by default:\n"
	"                             each hit traps into the kernel, measured at 5-7 us (3 hits per autocommit\n"
	"                             query: +20 us on a 42 us SELECT 1, docs/postgres-usdt.md). The rare-event\n"
	"                             probes (lock waits, deadlocks, checkpoints, aborts) are on whenever the\n"
	"                             postgres binary has them\n"
	"      --uprobe-attach MODE   how the PostgreSQL USDT probes attach: auto (the default: multi when the\n"
	"                             kernel has it), multi (one BPF uprobe_multi link per probe and binary,\n"
	"                             Linux 6.6+; needs only CAP_BPF and CAP_PERFMON) or perf (a perf-event\n"
	"                             uprobe per site, which Linux 6.15+ allows only with CAP_SYS_ADMIN;\n"
	"                             docs/privileges.md)\n"
	"      --user USER            once attached, switch to USER (a name or uid; loupe must start as root),\n"
	"                             keeping only the capabilities still needed. Either way loupe drops every\n"
	"                             other capability after attaching and sets no_new_privs (docs/privileges.md)\n"
	"      --fingerprint-budget N SQL fingerprints per service before statements collapse into _other (default\n"
	"                             50; the first ones seen are kept)\n"
	"      --profile-hz N         CPU samples per second on every CPU, of target threads (default 19; 0: off)\n"
	"      --offcpu               also measure the time target threads spend blocked (sched_switch)\n"
	"      --profile-all          CPU profiles of every process, not only targets (others: _untargeted)\n"
	"      --series-budget N      series allowed per metric before label sets collapse into _other (default 2000)\n"
	"      --log-level LEVEL      debug, info, warn or error (default info); logs are JSON lines on stderr\n"
	"  -h, --help                 show this help\n"
	"\n"
	"Endpoints: /metrics /healthz /readyz /status. Needs root, or CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE,\n"
	"CAP_DAC_READ_SEARCH and CAP_SYSLOG (docs/privileges.md), and a kernel with BTF. SIGINT or SIGTERM\n"
	"detaches everything and exits.\n";

/* "futex,getpid" (or "none") -> a bitmap by syscall number: 0, or -EINVAL with err set. */
static int parse_untimed(const char *list, uint64_t *bits, char *err, size_t errlen)
{
	char buf[512];
	memset(bits, 0, sizeof(((struct loupe_options *)0)->untimed));
	if (!strcmp(list, "none"))
		return 0;
	if (strlen(list) >= sizeof(buf) || !*list) {
		snprintf(err, errlen, "expected syscall names separated by commas, or none");
		return -EINVAL;
	}
	strcpy(buf, list);
	for (char *save = NULL, *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		int nr = syscall_number(name);
		if (nr < 0 || nr >= 64 * (int)ARRAY_SIZE(((struct loupe_options *)0)->untimed)) {
			snprintf(err, errlen, "unknown syscall '%.64s' (x86_64 names, as in loupe_syscall_duration_seconds)",
				 name);
			return -EINVAL;
		}
		bits[nr / 64] |= 1ull << (nr % 64);
	}
	return 0;
}

/* A numeric option with its range: the field it sets and how it is named in errors. */
static int parse_number_opt(const char *name, const char *arg, long lo, long hi, long *out)
{
	if (parse_long_in(arg, lo, hi, out)) {
		usage_error("run", "bad --%s '%s': expected %ld..%ld", name, arg, lo, hi);
		return -EINVAL;
	}
	return 0;
}

/* The words of the three-way options, in their enums' order. */
static const char *const syscalls_words[3] = {"on", "sampled", "off"};
static const char *const uprobe_words[3] = {"auto", "multi", "perf"};
static const char *const bpf_stats_words[3] = {"sampled", "always", "off"};
static const char *const auth_scope_words[3] = {"all", "profiles", "sessions"};

/* One of three words: *out gets its index (the option's enum lists them in this order), else -EINVAL after a usage
 * error listing them. */
static int parse_choice_opt(const char *name, const char *arg, const char *const words[3], int *out)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(arg, words[i])) {
			*out = i;
			return 0;
		}
	usage_error("run", "bad --%s '%s': expected %s, %s or %s", name, arg, words[0], words[1], words[2]);
	return -EINVAL;
}

/* Options into opt: 0 (run), or -EINVAL after printing a usage error; *help when --help was printed. */
static int parse_run_args(int argc, char **argv, struct loupe_options *opt, bool *help)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},	{"target", required_argument, NULL, 't'},
		{"series-budget", required_argument, NULL, 'B'}, {"log-level", required_argument, NULL, 'L'},
		{"tracepoints", required_argument, NULL, 'T'}, {"no-bpf-stats", no_argument, NULL, 'S'},
		{"bpf-stats", required_argument, NULL, 'P'}, {"capture-bytes", required_argument, NULL, 'C'},
		{"route-budget", required_argument, NULL, 'R'}, {"fingerprint-budget", required_argument, NULL, 'F'},
		{"pg-usdt-query", no_argument, NULL, 'Q'}, {"profile-hz", required_argument, NULL, 'H'},
		{"offcpu", no_argument, NULL, 'O'}, {"profile-all", no_argument, NULL, 'A'},
		{"untimed-syscalls", required_argument, NULL, 'U'}, {"syscalls", required_argument, NULL, 'Y'},
		{"uprobe-attach", required_argument, NULL, 'M'}, {"user", required_argument, NULL, 'N'},
		{"web-config", required_argument, NULL, 'W'}, {"auth-scope", required_argument, NULL, 'E'},
		{"sessions-per-minute", required_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *web_config = NULL, *auth_scope = NULL;
	char err[600];
	long n = 0;
	int c, rc = 0;
	opterr = 0;
	optind = 1;
	*help = false;
	while (!rc && (c = getopt_long(argc, argv, ":l:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': {
			char host[256];
			unsigned port;
			if ((rc = listen_addr_parse(optarg, host, sizeof(host), &port, err, sizeof(err))))
				usage_error("run", "%s", err);
			opt->listen = optarg;
			break;
		}
		case 't':
			if ((rc = target_rules__add(&opt->rules, optarg, err, sizeof(err))))
				usage_error("run", "%s", err);
			break;
		case 'B':
			if (!(rc = parse_number_opt("series-budget", optarg, 1, 1000000, &n)))
				opt->series_budget = (size_t)n;
			break;
		case 'C':
			if (!(rc = parse_number_opt("capture-bytes", optarg, 0, PAYLOAD_MAX_CAPTURE, &n)))
				opt->capture_bytes = (unsigned)n;
			break;
		case 'R':
			if (!(rc = parse_number_opt("route-budget", optarg, 1, 500, &n)))
				opt->route_budget = (unsigned)n;
			break;
		case 'F':
			if (!(rc = parse_number_opt("fingerprint-budget", optarg, 1, 500, &n)))
				opt->fingerprint_budget = (unsigned)n;
			break;
		case 'H':
			if (!(rc = parse_number_opt("profile-hz", optarg, 0, 1000, &n)))
				opt->profile_hz = (unsigned)n;
			break;
		case 'L': rc = parse_log_level_opt("run", optarg); break;
		case 'T': rc = parse_tracepoints_opt("run", optarg, &opt->tracepoints); break;
		case 'S': opt->bpf_stats = BPF_STATS_OFF; break;
		case 'Q': opt->pg_usdt_query = true; break;
		case 'O': opt->offcpu = true; break;
		case 'A': opt->scope = SCOPE_ALL; break;
		case 'U':
			if ((rc = parse_untimed(optarg, opt->untimed, err, sizeof(err))))
				usage_error("run", "bad --untimed-syscalls '%s': %s", optarg, err);
			opt->untimed_syscalls = optarg;
			break;
		case 'Y': {
			int v;
			if (!(rc = parse_choice_opt("syscalls", optarg, syscalls_words, &v)))
				opt->syscalls = v;
			break;
		}
		case 'N': {
			char *end;
			errno = 0;
			unsigned long uid = strtoul(optarg, &end, 10);
			bool numeric = *optarg >= '0' && *optarg <= '9' && !*end && !errno && uid < 4294967295UL;
			if (!numeric && !getpwnam(optarg)) {
				usage_error("run", "bad --user '%s': no such user", optarg);
				rc = -EINVAL;
			}
			opt->user = optarg;
			break;
		}
		case 'M': {
			int v;
			if (!(rc = parse_choice_opt("uprobe-attach", optarg, uprobe_words, &v)))
				opt->uprobe_attach = v;
			break;
		}
		case 'P': {
			int v;
			if (!(rc = parse_choice_opt("bpf-stats", optarg, bpf_stats_words, &v)))
				opt->bpf_stats = v;
			break;
		}
		case 'W':
			if (web_config) {
				usage_error("run", "--web-config given twice");
				rc = -EINVAL;
			}
			web_config = optarg;
			break;
		case 'E': {
			int v;
			auth_scope = optarg;
			if (!(rc = parse_choice_opt("auth-scope", optarg, auth_scope_words, &v)))
				opt->auth_scope = v;
			break;
		}
		case 'J':
			if (!(rc = parse_number_opt("sessions-per-minute", optarg, 0, 600, &n)))
				opt->sessions_per_minute = (unsigned)n;
			break;
		case 'h':
			fputs(run_usage, stdout);
			*help = true;
			return 0;
		case ':':
			usage_error("run", "option '%s' needs a value", argv[optind - 1]);
			rc = -EINVAL;
			break;
		default:
			usage_error("run", "unknown option '%s'", argv[optind - 1]);
			rc = -EINVAL;
			break;
		}
	}
	if (rc)
		return rc < 0 ? rc : -EINVAL;
	if (optind < argc) {
		usage_error("run", "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (web_config) { /* read now, as root and before anything starts: a bad file is a usage error */
		struct web_config *wc;
		if ((rc = webconfig__load(web_config, &wc, err, sizeof(err)))) {
			usage_error("run", "--web-config %s", err);
			return -EINVAL;
		}
		opt->web = wc;
	}
	if (auth_scope && !(opt->web && opt->web->nusers)) {
		usage_error("run", "--auth-scope %s: there are no basic_auth_users (in --web-config) to ask for",
			    auth_scope);
		return -EINVAL;
	}
	if (!opt->rules.nrules && (rc = target_rules__add_defaults(&opt->rules)))
		return rc;
	if (!opt->untimed_syscalls) {
		opt->untimed_syscalls = LOUPE_DEFAULT_UNTIMED;
		parse_untimed(LOUPE_DEFAULT_UNTIMED, opt->untimed, err, sizeof(err));
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct loupe_options opt = loupe_default_options;
	bool help;
	target_rules__init(&opt.rules);
	if (parse_run_args(argc, argv, &opt, &help) || help) {
		target_rules__free(&opt.rules);
		webconfig__free((struct web_config *)opt.web);
		return help ? 0 : EXIT_USAGE;
	}
	int rc = daemon__run(&opt, NULL); /* frees the rules */
	webconfig__free((struct web_config *)opt.web);
	return rc;
}
