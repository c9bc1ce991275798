// SPDX-License-Identifier: BSD-2-Clause
/* The daemon's life (src/daemon/daemon.h): check privileges and the kernel, bind the listen socket, open and attach
 * every collector of the table (a feature that cannot load is reported and the rest keep running), serve HTTP,
 * and pump ring buffers in one epoll loop until SIGINT/SIGTERM or a bounded session's end. */
#include "core/bpf_stats.h"
#include "core/core.h"
#include "core/loupe.h"
#include "core/privs.h"
#include "daemon/collectors.h"
#include "daemon/daemon.h"
#include "lib/log.h"
#include "payload.h"
#include "server/httpd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

const struct loupe_options loupe_default_options = {
	.listen = "127.0.0.1:9476",
	.series_budget = 2000,
	.capture_bytes = PAYLOAD_DEFAULT_CAPTURE,
	.route_budget = 100,
	.fingerprint_budget = 50,
	.profile_hz = 19,
	.syscalls = SYSCALLS_SAMPLED, /* docs/performance.md, "Cost benchmark": why */
};

#define EPOLL_SIGNAL UINT32_MAX /* epoll data of the signalfd; features are their index */

static uint32_t read_pid_max(void)
{
	char line[32];
	if (read_line("/proc/sys/kernel/pid_max", line, sizeof(line)))
		return 4194304; /* the kernel's PID_MAX_LIMIT on 64-bit */
	long n = strtol(line, NULL, 10);
	return n > 0 ? (uint32_t)n : 4194304;
}

/* --- feature lifecycle: open, attach, poll, close, walking the collector table --- */

static void poll_feature(struct feature *ft, uint64_t now)
{
	int err = ft->ops->poll(ft->priv);
	if (err)
		log_warn("poll_failed", "feature %s: reading its ring buffer failed: %s", ft->ops->name, strerror(-err));
	if (ft->ops->poll_period_ms)
		ft->next_poll_ns = now + ft->ops->poll_period_ms * NSEC_PER_MSEC;
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
	int64_t ms = MSEC_PER_SEC;
	pthread_mutex_lock(&L->lock);
	for (int i = 0; i < L->nfeatures; i++) {
		const struct feature *ft = &L->features[i];
		if (ft->state != FEATURE_RUNNING || !ft->ops->poll_period_ms)
			continue;
		uint64_t at = feature_due_ns(ft);
		int64_t due = at > now ? (int64_t)((at - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC) : 0;
		if (due < ms)
			ms = due;
	}
	pthread_mutex_unlock(&L->lock);
	return (int)ms;
}

/* Open and attach one feature; its state and detail say how it went (failures are logged, not fatal). */
static void start_feature(struct loupe *L, struct feature *ft)
{
	if (L->opt->only_features && !strstr(L->opt->only_features, ft->ops->name)) {
		ft->state = FEATURE_OFF; /* not part of this session (loupe profile) */
		return;
	}
	L->opening = ft;
	int err = ft->ops->open(L, &ft->priv);
	L->opening = NULL;
	if (err == LOUPE_FEATURE_DISABLED) {
		ft->state = FEATURE_OFF;
		ft->priv = NULL;
		log_info("feature_off", "feature %s is %s", ft->ops->name, ft->detail);
		return;
	}
	if (err) {
		ft->state = FEATURE_FAILED;
		snprintf(ft->detail, sizeof(ft->detail), "load failed: %s", strerror(-err));
		log_error("feature_failed", "feature %s could not load (%s); the others keep running", ft->ops->name,
			  strerror(-err));
		return;
	}
	ft->state = FEATURE_LOADED;
	if ((err = ft->ops->attach(ft->priv))) {
		ft->state = FEATURE_FAILED;
		snprintf(ft->detail, sizeof(ft->detail), "attach failed: %s", strerror(-err));
		log_error("feature_failed", "feature %s could not attach (%s); the others keep running", ft->ops->name,
			  strerror(-err));
		return;
	}
	ft->state = FEATURE_RUNNING;
	log_info("feature_running", "feature %s attached (%s)", ft->ops->name, ft->hook ? ft->hook : "-");
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

/* --- start-up --- */

/* Signals go to a signalfd; they are blocked first, before any thread (libmicrohttpd's) exists and before a
 * signal during start-up could kill us with nothing cleaned up. The fd, or -errno (logged). */
static int signal_fd(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	int err = pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if (err) {
		log_error("signals", "cannot block SIGINT and SIGTERM: %s", strerror(err));
		return -err;
	}
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) { /* a scrape client that goes away must not kill us */
		err = -errno;
		log_error("signals", "cannot ignore SIGPIPE: %s", strerror(-err));
		return err;
	}
	int fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0) {
		err = -errno;
		log_error("signals", "signalfd: %s", strerror(-err));
		return err;
	}
	return fd;
}

/* Privileges and BTF: 0 or -errno (logged). */
static int check_host(void)
{
	char msg[300];
	int priv = check_privileges(msg, sizeof(msg));
	if (priv < 0) {
		log_error("no_privileges", "%s", msg);
		return -EPERM;
	}
	if (priv > 0)
		log_warn("privileges_partial", "%s", msg);
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		log_error("no_btf", "kernel without BTF (/sys/kernel/btf/vmlinux missing): loupe needs a kernel built "
				    "with CONFIG_DEBUG_INFO_BTF=y");
		return -ENOENT;
	}
	return 0;
}

/* What the kernel supports (probed by loading tiny programs), and the tracepoint flavour that attaches
 * (--tracepoints, else the best): 0 or -errno (logged). */
static int choose_tracepoints(struct loupe *L)
{
	kfeatures__probe(&L->kf);
	L->tp_flavour = kfeatures__tp_flavour(&L->kf);
	if (!L->tp_flavour) {
		log_error("no_tracepoints", "neither tp_btf nor raw_tp programs can attach on this kernel (%s; %s)",
			  L->kf.r[KF_TP_BTF].detail, L->kf.r[KF_RAW_TP].detail);
		return -EOPNOTSUPP;
	}
	const char *forced = L->opt->tracepoints;
	if (forced) {
		enum kfeature want = strcmp(forced, "raw_tp") ? KF_TP_BTF : KF_RAW_TP;
		if (!L->kf.r[want].ok) {
			log_error("no_tracepoints", "--tracepoints %s: not supported by this kernel (%s)", forced,
				  L->kf.r[want].detail);
			return -EOPNOTSUPP;
		}
		L->tp_flavour = forced;
	}
	log_info("kernel", "tracepoints: %s; fentry %s; kprobe %s; uprobe %s; uprobe_multi %s; perf_event %s",
		 L->tp_flavour, L->kf.r[KF_FENTRY].ok ? "yes" : "no", L->kf.r[KF_KPROBE].ok ? "yes" : "no",
		 L->kf.r[KF_UPROBE].ok ? "yes" : "no", L->kf.r[KF_UPROBE_MULTI].ok ? "yes" : "no",
		 L->kf.r[KF_PERF_EVENT].ok ? "yes" : "no");
	return 0;
}

/* The registry and the feature table, every feature started: 0 or -errno (logged) when nothing can be watched. */
static int start_features(struct loupe *L)
{
	L->pid_max = read_pid_max();
	L->reg = registry__new();
	L->features = calloc((size_t)ncollectors, sizeof(*L->features));
	if (!L->reg || !L->features) {
		log_error("oom", "out of memory");
		return -ENOMEM;
	}
	registry__set_default_budget(L->reg, L->opt->series_budget);
	L->nfeatures = ncollectors;
	for (int i = 0; i < ncollectors; i++)
		L->features[i].ops = collectors[i];
	bpf_stats__start(L, now_ns(CLOCK_MONOTONIC)); /* the first window at start */
	for (int i = 0; i < L->nfeatures; i++)
		start_feature(L, &L->features[i]);
	if (L->features[0].state != FEATURE_RUNNING) {
		log_error("targets_failed", "target tracking could not start (%s): nothing to observe",
			  L->features[0].detail);
		return -ENODEV;
	}
	return 0;
}

/* An epoll set of the signalfd and every running feature's ring buffers: the fd, or -errno (logged). */
static int watch_fds(struct loupe *L, int sig_fd)
{
	int err, ep_fd = epoll_create1(EPOLL_CLOEXEC);
	if (ep_fd < 0) {
		err = -errno;
		log_error("epoll_failed", "epoll_create1: %s", strerror(-err));
		return err;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EPOLL_SIGNAL};
	if (epoll_ctl(ep_fd, EPOLL_CTL_ADD, sig_fd, &ev))
		goto fail;
	for (int i = 0; i < L->nfeatures; i++) {
		struct feature *ft = &L->features[i];
		int fd = ft->state == FEATURE_RUNNING && ft->ops->poll_fd ? ft->ops->poll_fd(ft->priv) : -1;
		if (fd < 0)
			continue;
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(ep_fd, EPOLL_CTL_ADD, fd, &ev))
			goto fail;
	}
	return ep_fd;
fail:
	err = -errno;
	log_error("epoll_failed", "epoll_ctl: %s", strerror(-err));
	close(ep_fd);
	return err;
}

/* --- the main loop --- */

/* Until a signal, the session's end or an epoll failure: 0 or -errno (logged). */
static int main_loop(struct loupe *L, int ep_fd, int sig_fd, const struct run_session *sess)
{
	uint64_t start = now_ns(CLOCK_MONOTONIC), end = start + (sess ? sess->seconds : 0) * NSEC_PER_SEC;
	uint64_t next_progress = start;
	for (;;) {
		struct epoll_event events[16];
		int timeout = poll_timeout_ms(L);
		if (sess && timeout > 200)
			timeout = 200;
		int n = epoll_wait(ep_fd, events, 16, timeout);
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		if (sess && now >= end)
			return 0;
		if (sess && sess->progress && now >= next_progress) {
			sess->progress(sess->arg, now - start, false);
			next_progress = now + NSEC_PER_SEC;
		}
		__atomic_store_n(&L->heartbeat_ns, now, __ATOMIC_RELAXED);
		bpf_stats__tick(L, now);
		if (n < 0 && errno != EINTR) {
			int err = -errno;
			log_error("epoll_failed", "epoll_wait: %s", strerror(-err));
			return err;
		}
		bool stop = false;
		pthread_mutex_lock(&L->lock);
		for (int i = 0; i < n; i++) {
			if (events[i].data.u32 != EPOLL_SIGNAL) {
				poll_feature(&L->features[events[i].data.u32], now);
				continue;
			}
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
				log_info("shutdown", "received %s: detaching", strsignal((int)si.ssi_signo));
				stop = true;
			}
		}
		for (int i = 0; i < L->nfeatures; i++) {
			struct feature *ft = &L->features[i];
			if (ft->state == FEATURE_RUNNING && ft->ops->poll_period_ms && now >= feature_due_ns(ft))
				poll_feature(ft, now);
		}
		pthread_mutex_unlock(&L->lock);
		if (stop)
			return 0;
	}
}

int daemon__run(const struct loupe_options *opt_, const struct run_session *sess)
{
	struct loupe_options opt = *opt_;
	struct loupe L = {.opt = &opt, .target_svc_fd = -1, .target_procs_fd = -1, .bpf_stats_fd = -1};
	struct httpd *httpd = NULL;
	int listen_fd = -1, sig_fd = -1, ep_fd = -1, err;
	bool lock_ready = false;
	char msg[300];

	if ((sig_fd = err = signal_fd()) < 0)
		goto out;
	log_hook_libbpf();
	L.start_ns = L.heartbeat_ns = now_ns(CLOCK_MONOTONIC);
	int unpinned = target_rules__pin_pids(&opt.rules);
	if (unpinned)
		log_warn("pid_target_missing", "%d pid: target(s) name no running process and will match nothing",
			 unpinned);
	if ((err = -pthread_mutex_init(&L.lock, NULL))) {
		log_error("oom", "cannot create the daemon lock: %s", strerror(-err));
		goto out;
	}
	lock_ready = true;
	if ((err = check_host()))
		goto out;
	if (!sess && (listen_fd = err = httpd_listen(opt.listen, msg, sizeof(msg))) < 0) {
		log_error("listen_failed", "%s", msg);
		goto out;
	}
	if ((err = choose_tracepoints(&L)) || (err = start_features(&L)) || (ep_fd = err = watch_fds(&L, sig_fd)) < 0)
		goto out;
	/* Everything is attached: keep only the capabilities the rest needs, before any thread starts. */
	struct privs_needs needs = {
		.sessions = !sess,
		.kernel_symbols = !sess || opt.profile_hz || opt.offcpu,
		.stats_windows = L.bpf_stats_on && !L.bpf_stats_host && opt.bpf_stats == BPF_STATS_SAMPLED,
	};
	if ((err = privs__drop(&needs, opt.user, msg, sizeof(msg)))) {
		log_error("privileges_failed", "%s", msg);
		goto out;
	}
	if (!sess) {
		if (!(httpd = httpd__start(&L, listen_fd))) {
			err = -errno;
			log_error("http_failed", "cannot start the HTTP server on %s", opt.listen);
			goto out;
		}
		listen_fd = -1; /* owned by libmicrohttpd now */
		log_info("listening", "serving %s://%s/metrics (also /healthz /readyz /status)", httpd__scheme(httpd),
			 opt.listen);
	}
	L.ready = true;
	pthread_mutex_lock(&L.lock);
	loupe__collect_locked(&L);
	pthread_mutex_unlock(&L.lock);
	if (!loupe__targets_total(&L))
		log_info("waiting_for_targets", "no target process yet: waiting for services to start");

	if ((err = main_loop(&L, ep_fd, sig_fd, sess)))
		goto out;
	if (sess) {
		if (sess->progress)
			sess->progress(sess->arg, (uint64_t)sess->seconds * NSEC_PER_SEC, true);
		err = sess->finish(&L, sess->arg);
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
	bpf_stats__stop(&L, now_ns(CLOCK_MONOTONIC));
	registry__free(L.reg);
	free(L.features);
	target_rules__free(&opt.rules);
	if (lock_ready)
		pthread_mutex_destroy(&L.lock);
	if (!err)
		log_info("stopped", "all BPF programs detached");
	return err ? 1 : 0;
}
