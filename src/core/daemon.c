/* `loupe run`: the daemon. Parse options, check privileges and the kernel, bind the listen socket, open and
 * attach every collector in the table, serve HTTP, and pump ring buffers until SIGINT/SIGTERM. */
#include "version.h"
#include "core/loupe.h"
#include "server/httpd.h"
#include "lib/log.h"
#include "lib/names.h"
#include "payload.h"
#include "core/selfstats.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static const char run_usage[] =
	"Usage: loupe run [OPTIONS]\n"
	"\n"
	"Run the profiler daemon: watch the target services and serve metrics over HTTP.\n"
	"\n"
	"Options:\n"
	"  -l, --listen ADDR:PORT     HTTP address (default 127.0.0.1:9476; [::1]:PORT for IPv6)\n"
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
	"      --fingerprint-budget N SQL fingerprints per service before statements collapse into _other (default\n"
	"                             50; the first ones seen are kept)\n"
	"      --profile-hz N         CPU samples per second on every CPU, of target threads (default 19; 0: off)\n"
	"      --offcpu               also measure the time target threads spend blocked (sched_switch)\n"
	"      --profile-all          CPU profiles of every process, not only targets (others: _untargeted)\n"
	"      --series-budget N      series allowed per metric before label sets collapse into _other (default 2000)\n"
	"      --log-level LEVEL      debug, info, warn or error (default info); logs are JSON lines on stderr\n"
	"  -h, --help                 show this help\n"
	"\n"
	"Endpoints: /metrics /healthz /readyz /status. Needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE,\n"
	"CAP_DAC_READ_SEARCH) and a kernel with BTF. SIGINT or SIGTERM detaches everything and exits.\n";

static void usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "loupe %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see 'loupe %s --help')\n", cmd);
	va_end(ap);
}

/* "futex,getpid" (or "none") -> a bitmap by syscall number. */
static int parse_untimed(const char *list, uint64_t *bits, char *err, size_t errlen)
{
	char buf[512];
	memset(bits, 0, sizeof(((struct loupe_options *)0)->untimed));
	if (!strcmp(list, "none"))
		return 0;
	if (strlen(list) >= sizeof(buf) || !*list) {
		snprintf(err, errlen, "expected syscall names separated by commas, or none");
		return -1;
	}
	strcpy(buf, list);
	for (char *save = NULL, *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		int nr = syscall_number(name);
		if (nr < 0 || nr >= 64 * (int)ARRAY_SIZE(((struct loupe_options *)0)->untimed)) {
			snprintf(err, errlen, "unknown syscall '%.64s' (x86_64 names, as in loupe_syscall_duration_seconds)",
				 name);
			return -1;
		}
		bits[nr / 64] |= 1ull << (nr % 64);
	}
	return 0;
}

static int parse_run_args(int argc, char **argv, struct loupe_options *opt)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},	{"target", required_argument, NULL, 't'},
		{"series-budget", required_argument, NULL, 'B'}, {"log-level", required_argument, NULL, 'L'},
		{"tracepoints", required_argument, NULL, 'T'}, {"no-bpf-stats", no_argument, NULL, 'S'},
		{"bpf-stats", required_argument, NULL, 'P'}, {"capture-bytes", required_argument, NULL, 'C'},
		{"route-budget", required_argument, NULL, 'R'}, {"fingerprint-budget", required_argument, NULL, 'F'},
		{"pg-usdt-query", no_argument, NULL, 'Q'}, {"profile-hz", required_argument, NULL, 'H'},
		{"offcpu", no_argument, NULL, 'O'}, {"profile-all", no_argument, NULL, 'A'},
		{"untimed-syscalls", required_argument, NULL, 'U'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	char err[300];
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":l:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': opt->listen = optarg; break;
		case 't':
			if (target_rules__add(&opt->rules, optarg, err, sizeof(err))) {
				usage_error("run", "%s", err);
				return 2;
			}
			break;
		case 'B': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 1000000) {
				usage_error("run", "bad --series-budget '%s': expected 1..1000000", optarg);
				return 2;
			}
			opt->series_budget = (size_t)n;
			break;
		}
		case 'C':
		case 'R':
		case 'F': {
			char *end;
			long n = strtol(optarg, &end, 10);
			long lo = c == 'C' ? 0 : 1, hi = c == 'C' ? PAYLOAD_MAX_CAPTURE : 500;
			const char *name = c == 'C' ? "capture-bytes" : c == 'R' ? "route-budget" : "fingerprint-budget";
			if (!*optarg || *end || n < lo || n > hi) {
				usage_error("run", "bad --%s '%s': expected %ld..%ld", name, optarg, lo, hi);
				return 2;
			}
			*(c == 'C' ? &opt->capture_bytes : c == 'R' ? &opt->route_budget : &opt->fingerprint_budget) = (unsigned)n;
			break;
		}
		case 'L': {
			enum log_level lvl;
			if (log_level_parse(optarg, &lvl)) {
				usage_error("run", "bad --log-level '%s': expected debug, info, warn or error", optarg);
				return 2;
			}
			log_set_level(lvl);
			break;
		}
		case 'T':
			if (strcmp(optarg, "auto") && strcmp(optarg, "tp_btf") && strcmp(optarg, "raw_tp")) {
				usage_error("run", "bad --tracepoints '%s': expected auto, tp_btf or raw_tp", optarg);
				return 2;
			}
			opt->tracepoints = strcmp(optarg, "auto") ? optarg : NULL;
			break;
		case 'S': opt->bpf_stats = BPF_STATS_OFF; break;
		case 'Q': opt->pg_usdt_query = true; break;
		case 'O': opt->offcpu = true; break;
		case 'A': opt->scope = SCOPE_ALL; break;
		case 'U':
			if (parse_untimed(optarg, opt->untimed, err, sizeof(err))) {
				usage_error("run", "bad --untimed-syscalls '%s': %s", optarg, err);
				return 2;
			}
			opt->untimed_syscalls = optarg;
			break;
		case 'H': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (!*optarg || *end || n < 0 || n > 1000) {
				usage_error("run", "bad --profile-hz '%s': expected 0..1000", optarg);
				return 2;
			}
			opt->profile_hz = (unsigned)n;
			break;
		}
		case 'P':
			if (!strcmp(optarg, "sampled"))
				opt->bpf_stats = BPF_STATS_SAMPLED;
			else if (!strcmp(optarg, "always"))
				opt->bpf_stats = BPF_STATS_ALWAYS;
			else if (!strcmp(optarg, "off"))
				opt->bpf_stats = BPF_STATS_OFF;
			else {
				usage_error("run", "bad --bpf-stats '%s': expected sampled, always or off", optarg);
				return 2;
			}
			break;
		case 'h': fputs(run_usage, stdout); return -1;
		case ':': usage_error("run", "option '%s' needs a value", argv[optind - 1]); return 2;
		default: usage_error("run", "unknown option '%s'", argv[optind - 1]); return 2;
		}
	}
	if (optind < argc) {
		usage_error("run", "unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (!opt->rules.nrules)
		target_rules__add_defaults(&opt->rules);
	if (!opt->untimed_syscalls) {
		opt->untimed_syscalls = LOUPE_DEFAULT_UNTIMED;
		parse_untimed(LOUPE_DEFAULT_UNTIMED, opt->untimed, err, sizeof(err));
	}
	return 0;
}

/* Refresh every series from the kernel maps; the caller holds L->lock. */
static void collect_locked(struct loupe *L)
{
	registry__begin_collect(L->reg);
	for (int i = 0; i < L->nfeatures; i++) {
		struct feature *ft = &L->features[i];
		if (ft->state == FEATURE_RUNNING && ft->ops->collect) {
			int err = ft->ops->collect(ft->priv, L->reg);
			if (err)
				log_warn("collect_failed", "feature %s: collection failed: %s", ft->ops->name,
					 strerror(-err));
		}
	}
	selfstats_collect(L, L->reg);
}

void loupe__scrape(struct loupe *L, enum expo_format fmt, struct buf *out)
{
	pthread_mutex_lock(&L->lock);
	collect_locked(L);
	registry__render(L->reg, fmt, out);
	pthread_mutex_unlock(&L->lock);
}

static void status_drop(void *ctx, const char *const *v, double value)
{
	struct buf *b = ctx;
	if (b->len && b->p[b->len - 1] != '{')
		buf__append(b, ",", 1);
	buf__puts(b, "\"");
	buf__json_str(b, v[0]);
	buf__puts(b, ".");
	buf__json_str(b, v[1]);
	buf__printf(b, "\":%.0f", value);
}

void loupe__status(struct loupe *L, struct buf *b)
{
	pthread_mutex_lock(&L->lock);
	collect_locked(L); /* fresh targets and drop counts */
	unsigned total = 0;
	for (int s = 1; s <= L->opt->rules.nservices; s++)
		total += L->targets_per_service[s];
	buf__printf(b, "{\"version\":\"%s\",\"revision\":\"%s\",\"uptime_seconds\":%.0f,\"ready\":%s,\"state\":\"%s\"",
		    LOUPE_VERSION, LOUPE_COMMIT, (double)(now_ns(CLOCK_MONOTONIC) - L->start_ns) / 1e9,
		    L->ready ? "true" : "false", !L->ready ? "starting" : total ? "running" : "waiting_for_targets");
	buf__puts(b, ",\"kernel\":{");
	for (int k = 0; k < KF_NR; k++)
		buf__printf(b, "%s\"%s\":%s", k ? "," : "", kfeature_name((enum kfeature)k),
			    L->kf.r[k].ok ? "true" : "false");
	buf__puts(b, "},\"features\":[");
	for (int i = 0; i < L->nfeatures; i++) {
		struct feature *ft = &L->features[i];
		buf__printf(b, "%s{\"name\":\"%s\",\"state\":\"%s\",\"hook\":\"%s\"", i ? "," : "", ft->ops->name,
			    feature_state_name(ft->state), ft->hook ? ft->hook : "none");
		if (ft->detail[0]) {
			buf__puts(b, ",\"detail\":\"");
			buf__json_str(b, ft->detail);
			buf__puts(b, "\"");
		}
		if (ft->state == FEATURE_RUNNING && ft->ops->status) {
			struct buf extra = {0};
			ft->ops->status(ft->priv, &extra);
			if (extra.len) {
				buf__puts(b, ",");
				buf__append(b, extra.p, extra.len);
			}
			buf__free(&extra);
		}
		buf__puts(b, "}");
	}
	buf__puts(b, "],\"drops\":{");
	struct metric_family *drops = registry__find(L->reg, "loupe_events_dropped_total");
	if (drops)
		family__foreach(drops, status_drop, b);
	buf__puts(b, "},\"targets\":{");
	for (int s = 1; s <= L->opt->rules.nservices; s++) {
		buf__printf(b, "%s\"", s > 1 ? "," : "");
		buf__json_str(b, L->opt->rules.service[s]);
		buf__printf(b, "\":%u", L->targets_per_service[s]);
	}
	buf__puts(b, "}}\n");
	pthread_mutex_unlock(&L->lock);
}

static uint32_t read_pid_max(void)
{
	char line[32];
	if (read_line("/proc/sys/kernel/pid_max", line, sizeof(line)))
		return 4194304; /* the kernel's PID_MAX_LIMIT on 64-bit */
	long n = strtol(line, NULL, 10);
	return n > 0 ? (uint32_t)n : 4194304;
}

/* Kernel BPF run-time statistics. The fd from bpf_enable_stats() is a reference: closing it (or exiting)
 * restores whatever setting the host had. While it is held every BPF program run on the host pays two clock
 * reads (measured: docs/performance.md), so by default statistics are on in windows: per-run cost
 * (run_seconds / runs) stays exact, totals cover the windows (loupe_bpf_stats_enabled_seconds_total). */
static void bpf_stats_open_window(struct loupe *L, uint64_t now)
{
	L->bpf_stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (L->bpf_stats_fd < 0) {
		log_warn("bpf_stats_unavailable", "kernel BPF statistics unavailable (%s): per-program figures are not "
						  "exported", strerror(errno));
		L->bpf_stats_on = false;
		return;
	}
	L->bpf_stats_since_ns = now;
}

static void bpf_stats_close_window(struct loupe *L, uint64_t now)
{
	if (L->bpf_stats_fd < 0)
		return;
	close(L->bpf_stats_fd);
	L->bpf_stats_fd = -1;
	L->bpf_stats_seconds += (double)(now - L->bpf_stats_since_ns) / 1e9;
}

double loupe__bpf_stats_seconds(const struct loupe *L)
{
	double s = L->bpf_stats_seconds;
	if (L->bpf_stats_fd >= 0)
		s += (double)(now_ns(CLOCK_MONOTONIC) - L->bpf_stats_since_ns) / 1e9;
	return s;
}

/* Called from the main loop (at least once a second): opens and closes sampled windows. */
static void bpf_stats_tick(struct loupe *L, uint64_t now)
{
	if (!L->bpf_stats_on || L->opt->bpf_stats != BPF_STATS_SAMPLED)
		return;
	/* The first window, at start, is longer: figures from the first scrapes, and a start-up to look at. */
	uint64_t window = (L->bpf_stats_seconds == 0 ? BPF_STATS_FIRST_WINDOW_S : BPF_STATS_WINDOW_S) * 1000000000ull;
	if (L->bpf_stats_fd >= 0 && now - L->bpf_stats_since_ns >= window) {
		pthread_mutex_lock(&L->lock);
		bpf_stats_close_window(L, now);
		pthread_mutex_unlock(&L->lock);
	} else if (L->bpf_stats_fd < 0 && now >= L->bpf_stats_next_ns) {
		L->bpf_stats_next_ns = now + BPF_STATS_PERIOD_S * 1000000000ull;
		pthread_mutex_lock(&L->lock);
		bpf_stats_open_window(L, now);
		pthread_mutex_unlock(&L->lock);
	}
}

static void poll_feature(struct feature *ft, uint64_t now)
{
	int err = ft->ops->poll(ft->priv);
	if (err)
		log_warn("poll_failed", "feature %s: reading its ring buffer failed: %s", ft->ops->name, strerror(-err));
	if (ft->ops->poll_period_ms)
		ft->next_poll_ns = now + ft->ops->poll_period_ms * 1000000ull;
}

/* When feature ft wants poll() next: its period, or sooner when it asks (poll_due_ns). Under the daemon lock. */
static uint64_t feature_due_ns(const struct feature *ft)
{
	uint64_t due = ft->next_poll_ns;
	if (ft->ops->poll_due_ns) {
		uint64_t want = ft->ops->poll_due_ns(ft->priv);
		if (want < due)
			due = want;
	}
	return due;
}

/* epoll_wait timeout: the main loop turns at least once a second (heartbeat, BPF statistics windows), and when
 * the next periodic poll is due. */
static int poll_timeout_ms(struct loupe *L)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	int64_t ms = 1000;
	pthread_mutex_lock(&L->lock);
	for (int i = 0; i < L->nfeatures; i++) {
		const struct feature *ft = &L->features[i];
		if (ft->state != FEATURE_RUNNING || !ft->ops->poll_period_ms)
			continue;
		uint64_t at = feature_due_ns(ft);
		int64_t due = at > now ? (int64_t)((at - now + 999999) / 1000000) : 0;
		if (due < ms)
			ms = due;
	}
	pthread_mutex_unlock(&L->lock);
	return (int)ms;
}

static void open_features(struct loupe *L)
{
	for (int i = 0; i < L->nfeatures; i++) {
		struct feature *ft = &L->features[i];
		if (L->opt->only_features && !strstr(L->opt->only_features, ft->ops->name)) {
			ft->state = FEATURE_OFF; /* not part of this session (loupe profile) */
			continue;
		}
		L->opening = ft;
		int err = ft->ops->open(L, &ft->priv);
		L->opening = NULL;
		if (err == LOUPE_FEATURE_DISABLED) {
			ft->state = FEATURE_OFF;
			ft->priv = NULL;
			log_info("feature_off", "feature %s is %s", ft->ops->name, ft->detail);
			continue;
		}
		if (err) {
			ft->state = FEATURE_FAILED;
			snprintf(ft->detail, sizeof(ft->detail), "load failed: %s", strerror(-err));
			log_error("feature_failed", "feature %s could not load (%s); the others keep running",
				  ft->ops->name, strerror(-err));
			continue;
		}
		ft->state = FEATURE_LOADED;
		err = ft->ops->attach(ft->priv);
		if (err) {
			ft->state = FEATURE_FAILED;
			snprintf(ft->detail, sizeof(ft->detail), "attach failed: %s", strerror(-err));
			log_error("feature_failed", "feature %s could not attach (%s); the others keep running",
				  ft->ops->name, strerror(-err));
			continue;
		}
		ft->state = FEATURE_RUNNING;
		log_info("feature_running", "feature %s attached (%s)", ft->ops->name, ft->hook ? ft->hook : "-");
	}
}

static void close_features(struct loupe *L)
{
	for (int i = L->nfeatures - 1; i >= 0; i--) {
		struct feature *ft = &L->features[i];
		if (ft->priv)
			ft->ops->close(ft->priv);
		ft->priv = NULL;
		ft->state = FEATURE_OFF;
	}
}

static const struct loupe_options default_options = {.listen = "127.0.0.1:9476",
						       .series_budget = 2000,
						       .capture_bytes = PAYLOAD_DEFAULT_CAPTURE,
						       .route_budget = 100,
						       .fingerprint_budget = 50,
						       .profile_hz = 19};

/* A bounded profiling session (loupe profile) instead of the daemon: no HTTP server, a deadline, a progress bar
 * on a terminal, and the profile written at the end. */
struct session {
	unsigned seconds;
	struct profile_request q;
	const char *out_path; /* "-": stdout */
};

static void progress(const struct session *s, uint64_t start, uint64_t now, bool done)
{
	const int width = 30;
	double frac = done ? 1.0 : (double)(now - start) / ((double)s->seconds * 1e9);
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

/* Write the session's profile to its file; 0 or 1 (error logged). */
static int session_write(struct loupe *L, const struct session *s)
{
	struct buf out = {0};
	const char *ctype;
	char err[200];
	int status = loupe__profile(L, &s->q, &out, &ctype, err, sizeof(err));
	if (status != 200) {
		fprintf(stderr, "loupe profile: %s\n", err);
		buf__free(&out);
		return 1;
	}
	FILE *f = strcmp(s->out_path, "-") ? fopen(s->out_path, "wb") : stdout;
	bool ok = f && fwrite(out.p ? out.p : "", 1, out.len, f) == out.len;
	if (f && f != stdout)
		ok = !fclose(f) && ok;
	else if (f)
		ok = !fflush(f) && ok;
	if (!ok)
		fprintf(stderr, "loupe profile: cannot write %s: %s\n", s->out_path, strerror(errno));
	buf__free(&out);
	return ok ? 0 : 1;
}

static int run_loupe(struct loupe_options *opt, const struct session *sess);

int cmd_run(int argc, char **argv)
{
	struct loupe_options opt = default_options;
	target_rules__init(&opt.rules);
	int rc = parse_run_args(argc, argv, &opt);
	if (rc) {
		target_rules__free(&opt.rules);
		return rc < 0 ? 0 : rc;
	}
	return run_loupe(&opt, NULL);
}

static int run_loupe(struct loupe_options *opt_, const struct session *sess)
{
	struct loupe_options opt = *opt_;
	struct loupe L = {.opt = &opt, .target_svc_fd = -1, .bpf_stats_fd = -1};
	struct httpd *httpd = NULL;
	int listen_fd = -1, sig_fd = -1, ep_fd = -1, err = 0;
	char msg[300];
	/* Signals go to a signalfd; block them first, before any thread (libmicrohttpd's) exists and before a
	 * signal during start-up could kill us with nothing cleaned up. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	log_hook_libbpf();
	L.start_ns = L.heartbeat_ns = now_ns(CLOCK_MONOTONIC);
	int unpinned = target_rules__pin_pids(&opt.rules);
	if (unpinned)
		log_warn("pid_target_missing", "%d pid: target(s) name no running process and will match nothing",
			 unpinned);
	pthread_mutex_init(&L.lock, NULL);

	if (check_privileges(msg, sizeof(msg))) {
		log_error("no_privileges", "%s", msg);
		err = 1;
		goto out;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		log_error("no_btf", "kernel without BTF (/sys/kernel/btf/vmlinux missing): loupe needs a kernel built "
				    "with CONFIG_DEBUG_INFO_BTF=y");
		err = 1;
		goto out;
	}
	if (!sess && (listen_fd = httpd_listen(opt.listen, msg, sizeof(msg))) < 0) {
		log_error("listen_failed", "%s", msg);
		err = 1;
		goto out;
	}

	kfeatures__probe(&L.kf);
	L.tp_flavour = kfeatures__tp_flavour(&L.kf);
	if (!L.tp_flavour) {
		log_error("no_tracepoints", "neither tp_btf nor raw_tp programs can attach on this kernel (%s; %s)",
			  L.kf.r[KF_TP_BTF].detail, L.kf.r[KF_RAW_TP].detail);
		err = 1;
		goto out;
	}
	if (opt.tracepoints) {
		enum kfeature want = strcmp(opt.tracepoints, "raw_tp") ? KF_TP_BTF : KF_RAW_TP;
		if (!L.kf.r[want].ok) {
			log_error("no_tracepoints", "--tracepoints %s: not supported by this kernel (%s)", opt.tracepoints,
				  L.kf.r[want].detail);
			err = 1;
			goto out;
		}
		L.tp_flavour = opt.tracepoints;
	}
	log_info("kernel", "tracepoints: %s; fentry %s; kprobe %s; uprobe %s; perf_event %s", L.tp_flavour, L.kf.r[KF_FENTRY].ok ? "yes" : "no",
		 L.kf.r[KF_KPROBE].ok ? "yes" : "no", L.kf.r[KF_UPROBE].ok ? "yes" : "no",
		 L.kf.r[KF_PERF_EVENT].ok ? "yes" : "no");

	L.pid_max = read_pid_max();
	L.reg = registry__new();
	L.features = calloc((size_t)ncollectors, sizeof(*L.features));
	if (!L.reg || !L.features) {
		log_error("oom", "out of memory");
		err = 1;
		goto out;
	}
	registry__set_default_budget(L.reg, opt.series_budget);
	L.nfeatures = ncollectors;
	for (int i = 0; i < ncollectors; i++)
		L.features[i].ops = collectors[i];
	L.bpf_stats_on = opt.bpf_stats != BPF_STATS_OFF;
	if (L.bpf_stats_on) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		L.bpf_stats_next_ns = now + BPF_STATS_PERIOD_S * 1000000000ull;
		bpf_stats_open_window(&L, now); /* the first window at start */
	}

	open_features(&L);
	if (L.features[0].state != FEATURE_RUNNING) {
		log_error("targets_failed", "target tracking could not start (%s): nothing to observe",
			  L.features[0].detail);
		err = 1;
		goto out;
	}

	ep_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	epoll_ctl(ep_fd, EPOLL_CTL_ADD, sig_fd, &ev);
	for (int i = 0; i < L.nfeatures; i++) {
		struct feature *ft = &L.features[i];
		int fd = ft->state == FEATURE_RUNNING && ft->ops->poll_fd ? ft->ops->poll_fd(ft->priv) : -1;
		if (fd < 0)
			continue;
		ev.data.u32 = (uint32_t)i;
		epoll_ctl(ep_fd, EPOLL_CTL_ADD, fd, &ev);
	}

	if (!sess) {
		httpd = httpd__start(&L, listen_fd);
		if (!httpd) {
			log_error("http_failed", "cannot start the HTTP server on %s", opt.listen);
			err = 1;
			goto out;
		}
		listen_fd = -1; /* owned by libmicrohttpd now */
		log_info("listening", "serving http://%s/metrics (also /healthz /readyz /status)", opt.listen);
	}
	L.ready = true;
	bool tty = sess && isatty(STDERR_FILENO);
	uint64_t sess_start = now_ns(CLOCK_MONOTONIC), sess_end = sess_start + (sess ? sess->seconds : 0) * 1000000000ull;
	uint64_t next_bar = sess_start;

	unsigned total = 0;
	{
		pthread_mutex_lock(&L.lock);
		collect_locked(&L);
		pthread_mutex_unlock(&L.lock);
		for (int s = 1; s <= opt.rules.nservices; s++)
			total += L.targets_per_service[s];
		if (!total)
			log_info("waiting_for_targets", "no target process yet: waiting for services to start");
	}

	for (;;) {
		struct epoll_event events[16];
		int timeout = poll_timeout_ms(&L);
		if (sess && timeout > 200)
			timeout = 200;
		int n = epoll_wait(ep_fd, events, 16, timeout);
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		if (sess && now >= sess_end)
			break;
		if (tty && now >= next_bar) {
			progress(sess, sess_start, now, false);
			next_bar = now + 1000000000ull;
		}
		__atomic_store_n(&L.heartbeat_ns, now, __ATOMIC_RELAXED);
		bpf_stats_tick(&L, now);
		if (n < 0 && errno != EINTR) {
			log_error("epoll_failed", "epoll_wait: %s", strerror(errno));
			err = 1;
			break;
		}
		bool stop = false;
		pthread_mutex_lock(&L.lock);
		for (int i = 0; i < n; i++) {
			if (events[i].data.u32 == UINT32_MAX) {
				struct signalfd_siginfo si;
				if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
					log_info("shutdown", "received %s: detaching", strsignal((int)si.ssi_signo));
					stop = true;
				}
				continue;
			}
			poll_feature(&L.features[events[i].data.u32], now);
		}
		for (int i = 0; i < L.nfeatures; i++) {
			struct feature *ft = &L.features[i];
			if (ft->state == FEATURE_RUNNING && ft->ops->poll_period_ms && now >= feature_due_ns(ft))
				poll_feature(ft, now);
		}
		pthread_mutex_unlock(&L.lock);
		if (stop)
			break;
	}

	if (sess && !err) {
		if (tty)
			progress(sess, sess_start, now_ns(CLOCK_MONOTONIC), true);
		err = session_write(&L, sess);
	}
out:
	httpd__stop(httpd);
	close_features(&L);
	if (ep_fd >= 0)
		close(ep_fd);
	if (sig_fd >= 0)
		close(sig_fd);
	if (listen_fd >= 0)
		close(listen_fd);
	bpf_stats_close_window(&L, now_ns(CLOCK_MONOTONIC));
	registry__free(L.reg);
	free(L.features);
	target_rules__free(&opt.rules);
	if (!err)
		log_info("stopped", "all BPF programs detached");
	return err;
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
	"  -o, --output FILE        where to write it (- for stdout)\n"
	"      --tracepoints KIND   auto (default), tp_btf or raw_tp (as for loupe run)\n"
	"      --log-level LEVEL    default warn\n"
	"  -h, --help               show this help\n"
	"\n"
	"On a terminal a progress bar shows the time left; otherwise loupe profile prints nothing but errors.\n";

int cmd_profile(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"service", required_argument, NULL, 's'}, {"pid", required_argument, NULL, 'p'},
		{"target", required_argument, NULL, 't'},  {"seconds", required_argument, NULL, 'S'},
		{"hz", required_argument, NULL, 'H'},	   {"kind", required_argument, NULL, 'k'},
		{"format", required_argument, NULL, 'f'},  {"output", required_argument, NULL, 'o'},
		{"log-level", required_argument, NULL, 'L'}, {"help", no_argument, NULL, 'h'},
		{"tracepoints", required_argument, NULL, 'T'},
		{0},
	};
	struct loupe_options opt = default_options;
	struct session sess = {.seconds = 30, .q = {.kind = 0, .format = PROFILE_FORMAT_PPROF}};
	const char *service = NULL, *pid = NULL;
	char err[300];
	int c, rc = 2;
	long n;
	char *end;
	target_rules__init(&opt.rules);
	opt.profile_hz = 99;
	opt.only_features = "targets profiler";
	opt.bpf_stats = BPF_STATS_OFF;
	log_set_level(LOG_WARN);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":t:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': service = optarg; break;
		case 'p': pid = optarg; break;
		case 't':
			if (target_rules__add(&opt.rules, optarg, err, sizeof(err))) {
				usage_error("profile", "%s", err);
				goto out;
			}
			break;
		case 'S':
		case 'H':
			n = strtol(optarg, &end, 10);
			if (!*optarg || *end || n < 1 || n > (c == 'S' ? 600 : 1000)) {
				usage_error("profile", "bad --%s '%s': expected 1..%d", c == 'S' ? "seconds" : "hz", optarg,
					    c == 'S' ? 600 : 1000);
				goto out;
			}
			if (c == 'S')
				sess.seconds = (unsigned)n;
			else
				opt.profile_hz = (unsigned)n;
			break;
		case 'k':
			if (strcmp(optarg, "cpu") && strcmp(optarg, "offcpu")) {
				usage_error("profile", "bad --kind '%s': expected cpu or offcpu", optarg);
				goto out;
			}
			sess.q.kind = !strcmp(optarg, "offcpu");
			break;
		case 'f':
			if (!strcmp(optarg, "pprof"))
				sess.q.format = PROFILE_FORMAT_PPROF;
			else if (!strcmp(optarg, "folded"))
				sess.q.format = PROFILE_FORMAT_FOLDED;
			else if (!strcmp(optarg, "svg"))
				sess.q.format = PROFILE_FORMAT_SVG;
			else {
				usage_error("profile", "bad --format '%s': expected pprof, folded or svg", optarg);
				goto out;
			}
			break;
		case 'o': sess.out_path = optarg; break;
		case 'T':
			if (strcmp(optarg, "auto") && strcmp(optarg, "tp_btf") && strcmp(optarg, "raw_tp")) {
				usage_error("profile", "bad --tracepoints '%s': expected auto, tp_btf or raw_tp", optarg);
				goto out;
			}
			opt.tracepoints = strcmp(optarg, "auto") ? optarg : NULL;
			break;
		case 'L': {
			enum log_level lvl;
			if (log_level_parse(optarg, &lvl)) {
				usage_error("profile", "bad --log-level '%s': expected debug, info, warn or error", optarg);
				goto out;
			}
			log_set_level(lvl);
			break;
		}
		case 'h': fputs(profile_usage, stdout); rc = 0; goto out;
		case ':': usage_error("profile", "option '%s' needs a value", argv[optind - 1]); goto out;
		default: usage_error("profile", "unknown option '%s'", argv[optind - 1]); goto out;
		}
	}
	if (optind < argc) {
		usage_error("profile", "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (!service == !pid) {
		usage_error("profile", "give one of --service NAME or --pid N");
		goto out;
	}
	if (!sess.out_path) {
		usage_error("profile", "-o FILE is required (- for stdout)");
		goto out;
	}
	if (pid) {
		char rule[64];
		snprintf(rule, sizeof(rule), "pid-%.20s=pid:%.20s", pid, pid);
		target_rules__free(&opt.rules);
		target_rules__init(&opt.rules);
		if (target_rules__add(&opt.rules, rule, err, sizeof(err))) {
			usage_error("profile", "bad --pid '%s': %s", pid, err);
			goto out;
		}
		if (target_rules__pin_pids(&opt.rules)) {
			fprintf(stderr, "loupe profile: no process with pid %s\n", pid);
			rc = 1;
			goto out;
		}
	} else {
		if (!opt.rules.nrules)
			target_rules__add_defaults(&opt.rules);
		bool found = false;
		for (int s = 1; s <= opt.rules.nservices; s++)
			found |= !strcmp(target_rules__service(&opt.rules, s), service);
		if (!found) {
			usage_error("profile", "no service named '%s' in the target rules", service);
			goto out;
		}
	}
	opt.offcpu = sess.q.kind == 1;
	sess.q.window_s = sess.seconds;
	sess.q.service = service ? service : target_rules__service(&opt.rules, 1);
	return run_loupe(&opt, &sess); /* frees the rules */
out:
	target_rules__free(&opt.rules);
	return rc;
}
