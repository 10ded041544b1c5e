#include "logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "container.h"
#include "err.h"
#include "util.h"

size_t
logfile_tail_start(const char *buf, size_t len, long tail)
{
	size_t k = len;
	long lines = 0;

	if (tail < 0)
		return 0;
	if (tail == 0)
		return len;
	if (k > 0 && buf[k - 1] == '\n')
		k--;
	while (k > 0 && !(buf[k - 1] == '\n' && ++lines == tail))
		k--;
	return k;
}

int
logfile_open(struct logfile *lf, const char *dir, long tail, char **head, size_t *len,
             struct shoal_err *err)
{
	cleanup_free char *p0 = xasprintf("%s/log.1", dir);
	cleanup_free char *old = NULL;
	size_t oldlen = 0, curlen = 0, cap, start;
	char *all;
	struct stat st;

	memset(lf, 0, sizeof(*lf));
	lf->path = xasprintf("%s/log", dir);
	/* Open the current log before reading the rotated one: a rotation in between then shows
	 * up as an inode change instead of losing a file's worth of output. */
	lf->fd = open(lf->path, O_RDONLY | O_CLOEXEC);
	if (lf->fd == -1 && errno != ENOENT) {
		err_set(err, errno, "open %s", lf->path);
		logfile_close(lf);
		return -1;
	}
	if (lf->fd >= 0 && fstat(lf->fd, &st) == 0)
		lf->ino = st.st_ino;
	old = util_read_file(p0, &oldlen, NULL);
	cap = oldlen + CONTAINER_LOG_MAX + 65536;
	all = xmalloc(cap + 1);
	if (oldlen)
		memcpy(all, old, oldlen);
	curlen = oldlen;
	while (lf->fd >= 0 && curlen < cap) {
		ssize_t n = read(lf->fd, all + curlen, cap - curlen);
		if (n <= 0)
			break;
		curlen += (size_t)n;
	}
	start = logfile_tail_start(all, curlen, tail);
	memmove(all, all + start, curlen - start);
	*len = curlen - start;
	all[*len] = '\0';
	*head = all;
	return 0;
}

size_t
logfile_read(struct logfile *lf, char *buf, size_t cap)
{
	struct stat st;
	ssize_t n;

	if (lf->fd >= 0) {
		n = read(lf->fd, buf, cap);
		if (n > 0)
			return (size_t)n;
	}
	/* Rotated (or created): finish nothing more from the old file, follow the new one. */
	if (stat(lf->path, &st) == 0 && (lf->fd < 0 || st.st_ino != lf->ino)) {
		if (lf->fd >= 0)
			close(lf->fd);
		lf->fd = open(lf->path, O_RDONLY | O_CLOEXEC);
		lf->ino = st.st_ino;
		if (lf->fd >= 0) {
			n = read(lf->fd, buf, cap);
			if (n > 0)
				return (size_t)n;
		}
	}
	return 0;
}

void
logfile_close(struct logfile *lf)
{
	if (lf->fd >= 0)
		close(lf->fd);
	lf->fd = -1;
	free(lf->path);
	lf->path = NULL;
}
