/* SPDX-License-Identifier: BSD-2-Clause */
/* SVG flame graphs rendered by loupe from a profile (profile.h): one self-contained file that any browser opens,
 * with no external resource (no fonts, scripts or styles fetched).
 *
 * Layout: the classic flame graph. The root ("all") is the bottom row, each row up is one call deeper, and a
 * frame's width is proportional to its value (samples of CPU profiles, blocked ns of off-CPU ones, or as
 * asked). Siblings are sorted by name (not by time), so equal stacks merge into one tower. With
 * PROFILE_FOLD_SERVICE / PROFILE_FOLD_THREAD the service and thread names are the first frames above the root
 * (drawn grey). Frames narrower than min_width pixels are not drawn, nor is anything above them, so a frame is
 * never narrower than the sum of the frames drawn on it. Positions are in hundredths of a pixel, computed from
 * cumulative values, so drawn children never overflow their parent through rounding.
 *
 * Each frame is a <g> with a <title> tooltip ("name", then the value, human readable, and its share of the
 * total), a <rect> coloured by a hash of the name (warm colours for CPU, blues for off-CPU: the same function
 * keeps its colour across graphs) and a <text> label cut to fit. Names are XML-escaped; control characters and
 * bytes that are not UTF-8 become '?'.
 *
 * Embedded JavaScript (in the SVG, no library): click a frame to zoom on it (its ancestors stay, dimmed),
 * "Reset zoom" or Escape to go back; "Search" (or Ctrl-F, or ?s=REGEX in the URL) highlights frames whose name
 * matches a regular expression and shows the share of the total they cover (overlapping matches count once);
 * the bottom line shows the tooltip of the frame under the mouse. */
#ifndef LOUPE_FLAMEGRAPH_H
#define LOUPE_FLAMEGRAPH_H
#include "profile/profile.h"
#include "lib/util.h"

#define FLAMEGRAPH_WIDTH 1200		/* px */
#define FLAMEGRAPH_MIN_WIDTH 0.1	/* px */
#define FLAMEGRAPH_FRAME_HEIGHT 16	/* px per row */

struct flamegraph_opts {
	const char *title;	/* NULL: "CPU profile" or "Off-CPU profile" */
	const char *subtitle;	/* NULL: service, duration, totals ("service api, 30 s, 1,234 samples at 99 Hz") */
	const char *service;	/* the service the profile was filtered to, for the default subtitle; NULL: all */
	enum profile_value value;	/* what widths measure; DEFAULT: the kind's own (profile.h) */
	unsigned int flags;	/* PROFILE_FOLD_SERVICE, PROFILE_FOLD_THREAD */
	unsigned int width;	/* image width, px; 0: FLAMEGRAPH_WIDTH (at least 100) */
	double min_width;	/* px; 0: FLAMEGRAPH_MIN_WIDTH */
};

/* Render p as an SVG document appended to out. o may be NULL (all defaults). Returns 0, -EINVAL or -ENOMEM. */
int flamegraph_svg(const struct profile *p, const struct flamegraph_opts *o, struct buf *out);

#endif
