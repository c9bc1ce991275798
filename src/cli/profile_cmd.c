// SPDX-License-Identifier: BSD-2-Clause
/* `loupe profile`: a bounded profiling session, standalone (no HTTP server): parse the options, run the daemon's
 * loop for the session (src/daemon/daemon.c) with only the targets and profiler features, show a progress bar on
 * a terminal, and write the profile (src/collectors/profiler.c renders it) at the end. */
#include "cli/cli.h"
#include "collectors/profiles.h"
#include "daemon/daemon.h"
#include "core/loupe.h"
#include "lib/log.h"

#include <errno.h>
#include <getopt.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct session {
	unsigned seconds;
	struct profile_request q;
	const char *out_path; /* "-": stdout */
};

static void progress(void *arg, uint64_t elapsed_ns, bool done)
{
	const struct session *s = arg;
	const int width = 30;
	double frac = done ? 1.0 : ns_to_seconds(elapsed_ns) / (double)s->seconds;
	if (frac > 1)
		frac = 1;
	int fill = (int)(frac * width + 0.5);
	unsigned left = done ? 0 : (unsigned)((1.0 - frac) * s->seconds + 0.999);
	fprintf(stderr, "\rprofiling [%.*s%*s] %3u%%  %us left ", fill, "##############################", width - fill, "",
		(unsigned)(frac * 100), left);
	if (done)
		fputc('\n', stderr);
	fflush(stderr);
}

/* Write the session's profile to its file: 0, or -errno (said on stderr). */
static int session_write(struct loupe *L, void *arg)
{
	const struct session *s = arg;
	struct buf out = {0};
	const char *ctype;
	char err[200];
	int rc = profiler__profile(L, &s->q, &out, &ctype, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "loupe profile: %s\n", err);
		goto out;
	}
	FILE *f = strcmp(s->out_path, "-") ? fopen(s->out_path, "wb") : stdout;
	bool ok = f && fwrite(out.p ? out.p : "", 1, out.len, f) == out.len;
	if (f && f != stdout)
		ok = !fclose(f) && ok;
	else if (f)
		ok = !fflush(f) && ok;
	if (!ok) {
		rc = -errno;
		fprintf(stderr, "loupe profile: cannot write %s: %s\n", s->out_path, strerror(errno));
	}
	uint64_t lost = profiler__lost_records(L);
	if (!rc && lost) /* the profile is written, but it must not look complete */
		fprintf(stderr, "loupe profile: warning: %llu records were lost (the ring buffer was full: loupe fell "
			"behind); the profile is incomplete\n", (unsigned long long)lost);
out:
	buf__free(&out);
	return rc;
}

static const char profile_usage[] =
	"Usage: loupe profile (--service NAME | --pid N) [OPTIONS] -o FILE\n"
	"\n"
	"Profile a service or a process for a while, standalone (no daemon needed), and write the profile.\n"
	"\n"
	"Options:\n"
	"      --service NAME       a service of the target rules (default rules: api, postgres; or --target)\n"
	"      --pid N              one process (and its children)\n"
	"  -t, --target NAME=SEL    target rules, as for loupe run (with --service)\n"
	"      --seconds N          how long to sample (default 30, at most 600)\n"
	"      --hz H               samples per second on every CPU (default 99)\n"
	"      --kind KIND          cpu (default) or offcpu (time blocked, by where threads blocked)\n"
	"      --format FORMAT      pprof (default; gzip), folded or svg\n"
	"      --focus REGEX        only the stacks through a function REGEX matches (extended regex, as pprof -focus)\n"
	"  -o, --output FILE        where to write it (- for stdout)\n"
	"      --tracepoints KIND   auto (default), tp_btf or raw_tp (as for loupe run)\n"
	"      --log-level LEVEL    default warn\n"
	"  -h, --help               show this help\n"
	"\n"
	"On a terminal a progress bar shows the time left; otherwise loupe profile prints nothing but errors, and a\n"
	"warning when records were lost (the profile is then incomplete; it is still written, exit status 0).\n";

/* Options into opt and sess: 0, or -EINVAL after a usage error, -ESRCH when --pid names no process (said);
 * *help when --help was printed. */
static int parse_profile_args(int argc, char **argv, struct loupe_options *opt, struct session *sess, bool *help)
{
	static const struct option longopts[] = {
		{"service", required_argument, NULL, 's'}, {"pid", required_argument, NULL, 'p'},
		{"target", required_argument, NULL, 't'},  {"seconds", required_argument, NULL, 'S'},
		{"hz", required_argument, NULL, 'H'},	   {"kind", required_argument, NULL, 'k'},
		{"format", required_argument, NULL, 'f'},  {"output", required_argument, NULL, 'o'},
		{"log-level", required_argument, NULL, 'L'}, {"help", no_argument, NULL, 'h'},
		{"tracepoints", required_argument, NULL, 'T'}, {"focus", required_argument, NULL, 'F'},
		{0},
	};
	const char *service = NULL, *pid = NULL;
	char err[300];
	int c, rc = 0;
	long n;
	opterr = 0;
	optind = 1;
	*help = false;
	while (!rc && (c = getopt_long(argc, argv, ":t:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': service = optarg; break;
		case 'p': pid = optarg; break;
		case 't':
			if ((rc = target_rules__add(&opt->rules, optarg, err, sizeof(err))))
				usage_error("profile", "%s", err);
			break;
		case 'S':
			if ((rc = parse_long_in(optarg, 1, 600, &n)))
				usage_error("profile", "bad --seconds '%s': expected 1..600", optarg);
			else
				sess->seconds = (unsigned)n;
			break;
		case 'H':
			if ((rc = parse_long_in(optarg, 1, 1000, &n)))
				usage_error("profile", "bad --hz '%s': expected 1..1000", optarg);
			else
				opt->profile_hz = (unsigned)n;
			break;
		case 'k':
			if (!strcmp(optarg, "cpu") || !strcmp(optarg, "offcpu")) {
				sess->q.kind = strcmp(optarg, "cpu") ? PROFILE_OFFCPU : PROFILE_CPU;
			} else {
				usage_error("profile", "bad --kind '%s': expected cpu or offcpu", optarg);
				rc = -EINVAL;
			}
			break;
		case 'f':
			if (!strcmp(optarg, "pprof"))
				sess->q.format = PROFILE_FORMAT_PPROF;
			else if (!strcmp(optarg, "folded"))
				sess->q.format = PROFILE_FORMAT_FOLDED;
			else if (!strcmp(optarg, "svg"))
				sess->q.format = PROFILE_FORMAT_SVG;
			else {
				usage_error("profile", "bad --format '%s': expected pprof, folded or svg", optarg);
				rc = -EINVAL;
			}
			break;
		case 'o': sess->out_path = optarg; break;
		case 'F': {
			regex_t re;
			int e = regcomp(&re, optarg, REG_EXTENDED | REG_NOSUB);
			if (e) {
				regerror(e, &re, err, sizeof(err));
				usage_error("profile", "bad --focus '%s': %s", optarg, err);
				rc = -EINVAL;
			} else {
				regfree(&re);
				sess->q.focus = optarg;
			}
			break;
		}
		case 'T': rc = parse_tracepoints_opt("profile", optarg, &opt->tracepoints); break;
		case 'L': rc = parse_log_level_opt("profile", optarg); break;
		case 'h':
			fputs(profile_usage, stdout);
			*help = true;
			return 0;
		case ':':
			usage_error("profile", "option '%s' needs a value", argv[optind - 1]);
			rc = -EINVAL;
			break;
		default:
			usage_error("profile", "unknown option '%s'", argv[optind - 1]);
			rc = -EINVAL;
			break;
		}
	}
	if (rc)
		return rc < 0 ? rc : -EINVAL;
	if (optind < argc) {
		usage_error("profile", "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!service == !pid) {
		usage_error("profile", "give one of --service NAME or --pid N");
		return -EINVAL;
	}
	if (!sess->out_path) {
		usage_error("profile", "-o FILE is required (- for stdout)");
		return -EINVAL;
	}
	if (pid) {
		char rule[64];
		snprintf(rule, sizeof(rule), "pid-%.20s=pid:%.20s", pid, pid);
		target_rules__free(&opt->rules);
		target_rules__init(&opt->rules);
		if (target_rules__add(&opt->rules, rule, err, sizeof(err))) {
			usage_error("profile", "bad --pid '%s': %s", pid, err);
			return -EINVAL;
		}
		if (target_rules__pin_pids(&opt->rules)) {
			fprintf(stderr, "loupe profile: no process with pid %s\n", pid);
			return -ESRCH;
		}
	} else {
		if (!opt->rules.nrules && (rc = target_rules__add_defaults(&opt->rules)))
			return rc;
		if (target_rules__service_id(&opt->rules, service) < 0) {
			usage_error("profile", "no service named '%s' in the target rules", service);
			return -EINVAL;
		}
	}
	opt->offcpu = sess->q.kind == PROFILE_OFFCPU;
	sess->q.window_s = sess->seconds;
	sess->q.service = service ? service : target_rules__service(&opt->rules, 1);
	return 0;
}

int cmd_profile(int argc, char **argv)
{
	struct loupe_options opt = loupe_default_options;
	struct session sess = {.seconds = 30, .q = {.kind = PROFILE_CPU, .format = PROFILE_FORMAT_PPROF}};
	bool help;
	target_rules__init(&opt.rules);
	opt.profile_hz = 99;
	opt.only_features = "targets profiler";
	opt.bpf_stats = BPF_STATS_OFF;
	log_set_level(LOG_WARN);
	int rc = parse_profile_args(argc, argv, &opt, &sess, &help);
	if (rc || help) {
		target_rules__free(&opt.rules);
		return help ? 0 : rc == -ESRCH ? 1 : EXIT_USAGE;
	}
	struct run_session run = {.seconds = sess.seconds,
				  .progress = isatty(STDERR_FILENO) ? progress : NULL,
				  .finish = session_write,
				  .arg = &sess};
	return daemon__run(&opt, &run); /* frees the rules */
}
