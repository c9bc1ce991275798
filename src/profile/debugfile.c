// SPDX-License-Identifier: BSD-2-Clause
/* Debug file lookup: candidate paths by build-id and by debuglink, each opened and checked in turn. */
#include "profile/debugfile.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/util.h"
#include "profile/elfsyms.h"

struct debug_file {
	Elf *elf;
	int fd;
};

/* An open debug file with a .symtab whose build-id matches (when both have one), else NULL. */
static Elf *open_debug(const char *path, const unsigned char *id, size_t id_len, int *fdp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (e && elf_kind(e) == ELF_K_ELF && elf_find_section(e, SHT_SYMTAB, NULL)) {
		unsigned char did[SYM_BUILD_ID_MAX];
		size_t dlen = elf_build_id(e, did, sizeof(did));
		if (!id_len || !dlen || (dlen == id_len && !memcmp(did, id, id_len))) {
			*fdp = fd;
			return e;
		}
	}
	elf_end(e);
	close(fd);
	return NULL;
}

/* Separate debug file of the ELF at root + path: by build-id, then by .gnu_debuglink. */
static Elf *find_debug(Elf *e, const char *debug_root, const char *root, const char *path,
		       const unsigned char *id, size_t id_len, int *fdp)
{
	char p[PATH_MAX];
	Elf *d;
	if (id_len >= 2) {
		char hex[2 * SYM_BUILD_ID_MAX + 1];
		for (size_t i = 0; i < id_len; i++)
			snprintf(hex + 2 * i, 3, "%02x", id[i]);
		snprintf(p, sizeof(p), "%s%s/.build-id/%.2s/%s.debug", root, debug_root, hex, hex + 2);
		if ((d = open_debug(p, id, id_len, fdp)))
			return d;
		if (*root) {
			snprintf(p, sizeof(p), "%s/.build-id/%.2s/%s.debug", debug_root, hex, hex + 2);
			if ((d = open_debug(p, id, id_len, fdp)))
				return d;
		}
	}
	Elf_Scn *scn = path ? elf_find_section(e, SHT_PROGBITS, ".gnu_debuglink") : NULL;
	Elf_Data *data = scn ? elf_getdata(scn, NULL) : NULL;
	if (!data || !data->d_size || !memchr(data->d_buf, '\0', data->d_size))
		return NULL;
	const char *link = data->d_buf;
	if (!*link || strchr(link, '/'))
		return NULL;
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path) : 0;
	const char *fmts[] = {"%s%.*s/%s", "%s%.*s/.debug/%s"};
	for (size_t i = 0; i < ARRAY_SIZE(fmts); i++) {
		snprintf(p, sizeof(p), fmts[i], root, dirlen, path, link);
		if (strcmp(p, path) && (d = open_debug(p, id, id_len, fdp)))
			return d;
	}
	snprintf(p, sizeof(p), "%s%s%.*s/%s", root, debug_root, dirlen, path, link);
	if ((d = open_debug(p, id, id_len, fdp)))
		return d;
	if (*root) {
		snprintf(p, sizeof(p), "%s%.*s/%s", debug_root, dirlen, path, link);
		if ((d = open_debug(p, id, id_len, fdp)))
			return d;
	}
	return NULL;
}

struct debug_file *debug_file__find(Elf *e, const char *debug_root, const char *root, const char *path,
				    const unsigned char *id, size_t id_len)
{
	int fd = -1;
	Elf *elf = find_debug(e, debug_root, root, path, id, id_len, &fd);
	if (!elf)
		return NULL;
	struct debug_file *d = malloc(sizeof(*d));
	if (!d) {
		elf_end(elf);
		close(fd);
		return NULL;
	}
	*d = (struct debug_file){ .elf = elf, .fd = fd };
	return d;
}

Elf *debug_file__elf(const struct debug_file *d)
{
	return d ? d->elf : NULL;
}

void debug_file__close(struct debug_file *d)
{
	if (!d)
		return;
	elf_end(d->elf);
	close(d->fd);
	free(d);
}
