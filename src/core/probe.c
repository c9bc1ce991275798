// SPDX-License-Identifier: BSD-2-Clause
/* Kernel feature probes (src/core/probe.h): load and attach one tiny program per hook kind (bpf/probe.bpf.c) and
 * record what worked and why not; also the privilege check every command makes first. */
#include "core/probe.h"
#include "lib/bpf_util.h"
#include "lib/log.h"
#include "probe.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *const names[KF_NR] = {
	[KF_BTF] = "btf",		[KF_TP_BTF] = "tp_btf",	      [KF_RAW_TP] = "raw_tp",
	[KF_FENTRY] = "fentry",		[KF_KPROBE] = "kprobe",	      [KF_UPROBE] = "uprobe",
	[KF_UPROBE_MULTI] = "uprobe_multi",
	[KF_PERF_EVENT] = "perf_event", [KF_RINGBUF] = "ring_buffer", [KF_BPF_STATS] = "bpf_stats",
};

const char *kfeature_name(enum kfeature f)
{
	return f < KF_NR ? names[f] : "?";
}

/* A function for the uprobe probe to attach to; noinline so it has a symbol and an address. */
__attribute__((noinline, used)) int loupe_uprobe_target(int x)
{
	__asm__ volatile("" ::: "memory");
	return x + 1;
}

static void set_fail(struct kprobe_result *r, const char *what, int err)
{
	r->ok = false;
	snprintf(r->detail, sizeof(r->detail), "%s: %s", what, strerror(err < 0 ? -err : err));
}

static int no_print(enum libbpf_print_level l, const char *f, va_list ap)
{
	return 0;
}

/* Load only `keep` from a fresh probe object, then attach it with `attach`. */
static void probe_prog(struct kprobe_result *r, const char *keep,
		       int (*attach)(struct bpf_program *p, struct bpf_link **link))
{
	struct probe_bpf *skel = probe_bpf__open();
	struct bpf_link *link = NULL;
	struct bpf_program *prog;
	int err;

	if (!skel) {
		set_fail(r, "open", errno);
		return;
	}
	bpf_object__for_each_program(prog, skel->obj)
		bpf_program__set_autoload(prog, !strcmp(bpf_program__name(prog), keep));
	err = probe_bpf__load(skel);
	if (err) {
		set_fail(r, "load", err);
		goto out;
	}
	prog = bpf_object__find_program_by_name(skel->obj, keep);
	err = attach(prog, &link);
	if (err) {
		set_fail(r, "attach", err);
		goto out;
	}
	r->ok = true;
	r->detail[0] = '\0';
out:
	bpf_link__destroy(link);
	probe_bpf__destroy(skel);
}

static int attach_auto(struct bpf_program *p, struct bpf_link **link)
{
	*link = bpf_program__attach(p);
	return *link ? 0 : -errno;
}

static int attach_kprobe(struct bpf_program *p, struct bpf_link **link)
{
	*link = bpf_program__attach_kprobe(p, false, "do_nanosleep");
	return *link ? 0 : -errno;
}

static int attach_uprobe(struct bpf_program *p, struct bpf_link **link)
{
	*link = bpf_program__attach_uprobe_opts(p, 0 /* self */, "/proc/self/exe", 0,
						&(struct bpf_uprobe_opts){.sz = sizeof(struct bpf_uprobe_opts),
									  .func_name = "loupe_uprobe_target"});
	if (!*link)
		return -errno;
	return 0;
}

/* The file offset of loupe_uprobe_target in /proc/self/exe, from the mapping that holds it: 0 when not found. */
static uint64_t self_offset(void)
{
	uint64_t addr = (uint64_t)(uintptr_t)loupe_uprobe_target, off = 0;
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		uint64_t start, end, pgoff;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %" SCNx64, &start, &end, &pgoff) == 3 && addr >= start &&
		    addr < end) {
			off = addr - start + pgoff;
			break;
		}
	}
	if (f)
		fclose(f);
	return off;
}

/* The uprobe_multi probe: the program is loaded for that attach type, then linked at loupe_uprobe_target. */
static void probe_uprobe_multi(struct kprobe_result *r)
{
	struct probe_bpf *skel = probe_bpf__open();
	struct bpf_program *prog;
	int err, fd = -1;
	uint64_t off = self_offset();

	if (!skel) {
		set_fail(r, "open", errno);
		return;
	}
	bpf_object__for_each_program(prog, skel->obj)
		bpf_program__set_autoload(prog, !strcmp(bpf_program__name(prog), "probe_uprobe"));
	bpf_program__set_expected_attach_type(skel->progs.probe_uprobe, LOUPE_TRACE_UPROBE_MULTI);
	if ((err = probe_bpf__load(skel))) {
		set_fail(r, "load", err);
		goto out;
	}
	if (!off) {
		set_fail(r, "/proc/self/maps", ENOENT);
		goto out;
	}
	fd = uprobe_multi_link(bpf_program__fd(skel->progs.probe_uprobe), "/proc/self/exe", &off, NULL, 1);
	if (fd < 0) {
		set_fail(r, "link_create", fd);
		goto out;
	}
	close(fd);
	r->ok = true;
	r->detail[0] = '\0';
out:
	probe_bpf__destroy(skel);
}

static int attach_perf(struct bpf_program *p, struct bpf_link **link)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.size = sizeof(attr),
		.sample_freq = 19,
		.freq = 1,
	};
	int fd = (int)syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		return -errno;
	*link = bpf_program__attach_perf_event(p, fd);
	if (!*link) {
		int err = -errno;
		close(fd);
		return err;
	}
	return 0; /* the link owns fd */
}

void kfeatures__probe(struct kfeatures *kf)
{
	libbpf_print_fn_t old = libbpf_set_print(no_print);
	memset(kf, 0, sizeof(*kf));

	struct kprobe_result *r = &kf->r[KF_BTF];
	if (access("/sys/kernel/btf/vmlinux", R_OK) == 0) {
		r->ok = true;
	} else {
		set_fail(r, "/sys/kernel/btf/vmlinux", errno);
	}

	if (kf->r[KF_BTF].ok) {
		probe_prog(&kf->r[KF_TP_BTF], "probe_tp_btf", attach_auto);
		probe_prog(&kf->r[KF_FENTRY], "probe_fentry", attach_auto);
	} else {
		snprintf(kf->r[KF_TP_BTF].detail, sizeof(kf->r[KF_TP_BTF].detail), "needs kernel BTF");
		snprintf(kf->r[KF_FENTRY].detail, sizeof(kf->r[KF_FENTRY].detail), "needs kernel BTF");
	}
	probe_prog(&kf->r[KF_RAW_TP], "probe_raw_tp", attach_auto);
	probe_prog(&kf->r[KF_KPROBE], "probe_kprobe", attach_kprobe);
	probe_prog(&kf->r[KF_UPROBE], "probe_uprobe", attach_uprobe);
	probe_uprobe_multi(&kf->r[KF_UPROBE_MULTI]);
	probe_prog(&kf->r[KF_PERF_EVENT], "probe_perf_event", attach_perf);
	probe_prog(&kf->r[KF_RINGBUF], "probe_ringbuf", attach_auto);

	r = &kf->r[KF_BPF_STATS];
	int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (fd >= 0) {
		r->ok = true;
		close(fd);
	} else {
		set_fail(r, "bpf_enable_stats", errno);
	}
	kf->probed = true;
	libbpf_set_print(old);
}

const char *kfeatures__tp_flavour(const struct kfeatures *kf)
{
	if (kf->r[KF_TP_BTF].ok)
		return "tp_btf";
	if (kf->r[KF_RAW_TP].ok)
		return "raw_tp";
	return NULL;
}

int check_privileges(char *msg, int msglen)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {0};
	if (syscall(SYS_capget, &hdr, data)) {
		snprintf(msg, msglen, "cannot read capabilities (%s): run as root", strerror(errno));
		return -EPERM;
	}
#define HAS(c) (data[(c) / 32].effective & (1u << ((c) % 32)))
	/* CAP_SYS_ADMIN implies what CAP_BPF and CAP_PERFMON grant, but not reading other users' /proc entries. */
	const char *missing = HAS(CAP_SYS_ADMIN)			     ? NULL
			      : !HAS(CAP_BPF) && !HAS(CAP_PERFMON) ? "CAP_BPF and CAP_PERFMON"
			      : !HAS(CAP_BPF)			     ? "CAP_BPF"
			      : !HAS(CAP_PERFMON)		     ? "CAP_PERFMON"
								     : NULL;
	if (missing) {
		snprintf(msg, msglen, "need %s (or CAP_SYS_ADMIN) to load BPF programs: run as root or grant them",
			 missing);
		return -EPERM;
	}
	/* Without these, the processes of other users are still counted and their traffic parsed (that is all BPF),
	 * but their /proc/PID/{maps,exe,root,mem} and files cannot be read: their stacks are not unwound nor named
	 * (measured: tests/bpf/test_privileges.py, docs/privileges.md). Worth a warning, not a refusal. */
	if (!HAS(CAP_SYS_PTRACE) || !HAS(CAP_DAC_READ_SEARCH)) {
		snprintf(msg, msglen, "without %s, processes of other users are watched but their stacks are neither "
				      "unwound nor named (their /proc/PID/maps, exe, root and binaries are unreadable)",
			 !HAS(CAP_SYS_PTRACE) && !HAS(CAP_DAC_READ_SEARCH) ? "CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
			 : !HAS(CAP_SYS_PTRACE)				      ? "CAP_SYS_PTRACE"
										      : "CAP_DAC_READ_SEARCH");
		return 1;
	}
#undef HAS
	return 0;
}
