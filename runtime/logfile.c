#include "logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "container.h"
#include "err.h"
#include "util.h"
#include "when.h"

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

size_t
logfile_encode(char *out, int stream, int64_t ns, const char *data, size_t len)
{
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;
	char stamp[80];
	size_t o = 0;

	gmtime_r(&sec, &tm);
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)(ns % 1000000000));
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;
		o += (size_t)sprintf(out + o, "%s %s %c ", stamp, stream == 2 ? "stderr" : "stdout",
		                     nl ? 'F' : 'P');
		memcpy(out + o, data, n);
		o += n;
		out[o++] = '\n';
		n += nl ? 1 : 0;
		data += n;
		len -= n;
	}
	return o;
}

struct outbuf {
	char *p;
	size_t len, cap;
};

static void
out_put(struct outbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Decode one record (without its newline). */
static void
decode_record(struct logfile *lf, const char *r, size_t n, struct outbuf *b)
{
	const char *sp1 = memchr(r, ' ', n), *body;
	int stream;
	bool full;
	int64_t ms;

	if (sp1 == NULL || when_parse_rfc3339(r, (size_t)(sp1 - r), &ms) == -1 ||
	    (size_t)(sp1 - r) + 10 > n ||
	    (memcmp(sp1 + 1, "stdout ", 7) != 0 && memcmp(sp1 + 1, "stderr ", 7) != 0) ||
	    (sp1[8] != 'F' && sp1[8] != 'P') || sp1[9] != ' ') {
		/* A raw line of a log written before records. */
		out_put(b, r, n);
		out_put(b, "\n", 1);
		return;
	}
	stream = sp1[4] == 'e' ? 2 : 1;
	full = sp1[8] == 'F';
	body = sp1 + 10;
	/* A line is kept or skipped by the time of its first fragment. */
	if (!lf->mid[stream])
		lf->skip[stream] = lf->o.since_ms && ms < lf->o.since_ms;
	if (lf->skip[stream]) {
		lf->mid[stream] = !full;
		return;
	}
	if (!lf->mid[stream] && lf->o.timestamps) {
		out_put(b, r, (size_t)(sp1 - r));
		out_put(b, " ", 1);
	}
	out_put(b, body, n - (size_t)(body - r));
	if (full)
		out_put(b, "\n", 1);
	lf->mid[stream] = !full;
}

/* Decode raw bytes read from the file: complete records out, a trailing fragment kept. */
static void
decode(struct logfile *lf, const char *raw, size_t n, struct outbuf *b)
{
	if (lf->npart) {
		const char *nl = memchr(raw, '\n', n);
		size_t k = nl ? (size_t)(nl - raw) + 1 : n;
		lf->part = xrealloc(lf->part, lf->npart + k);
		memcpy(lf->part + lf->npart, raw, k);
		lf->npart += k;
		raw += k;
		n -= k;
		if (!nl)
			return;
		decode_record(lf, lf->part, lf->npart - 1, b);
		lf->npart = 0;
	}
	while (n > 0) {
		const char *nl = memchr(raw, '\n', n);
		if (nl == NULL) {
			lf->part = xrealloc(lf->part, n);
			memcpy(lf->part, raw, n);
			lf->npart = n;
			return;
		}
		decode_record(lf, raw, (size_t)(nl - raw), b);
		n -= (size_t)(nl + 1 - raw);
		raw = nl + 1;
	}
}

int
logfile_open(struct logfile *lf, const char *dir, const struct logfile_opts *o, char **head,
             size_t *len, struct shoal_err *err)
{
	cleanup_free char *p0 = xasprintf("%s/log.1", dir);
	cleanup_free char *old = NULL;
	struct outbuf b = {0};
	size_t oldlen = 0, start;
	char buf[65536];
	struct stat st;

	memset(lf, 0, sizeof(*lf));
	lf->o = *o;
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
	out_put(&b, "", 0);
	old = util_read_file(p0, &oldlen, NULL);
	if (oldlen)
		decode(lf, old, oldlen, &b);
	/* A fragment at the end of log.1 is as complete as it will get. */
	lf->npart = 0;
	/* Up to a file's worth (and a bit of what is written meanwhile): a busy writer must not
	 * keep the first read from ever ending. */
	for (size_t total = 0; lf->fd >= 0 && total < CONTAINER_LOG_MAX + 65536;) {
		ssize_t n = read(lf->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		decode(lf, buf, (size_t)n, &b);
		total += (size_t)n;
	}
	start = logfile_tail_start(b.p, b.len, o->tail);
	memmove(b.p, b.p + start, b.len - start);
	*len = b.len - start;
	b.p[*len] = '\0';
	*head = b.p;
	return 0;
}

char *
logfile_read(struct logfile *lf, size_t *len)
{
	struct outbuf b = {0};
	char buf[65536];
	struct stat st;
	ssize_t n;

	*len = 0;
	while (lf->fd >= 0 && b.len < sizeof(buf) && (n = read(lf->fd, buf, sizeof(buf))) > 0)
		decode(lf, buf, (size_t)n, &b);
	if (b.len == 0 && stat(lf->path, &st) == 0 && (lf->fd < 0 || st.st_ino != lf->ino)) {
		/* Rotated (or created): nothing more from the old file, follow the new one. */
		if (lf->fd >= 0)
			close(lf->fd);
		lf->npart = 0;
		lf->fd = open(lf->path, O_RDONLY | O_CLOEXEC);
		lf->ino = st.st_ino;
		while (lf->fd >= 0 && b.len < sizeof(buf) &&
		       (n = read(lf->fd, buf, sizeof(buf))) > 0)
			decode(lf, buf, (size_t)n, &b);
	}
	if (b.len == 0) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

void
logfile_close(struct logfile *lf)
{
	if (lf->fd >= 0)
		close(lf->fd);
	lf->fd = -1;
	free(lf->path);
	lf->path = NULL;
	free(lf->part);
	lf->part = NULL;
	lf->npart = 0;
}

char *
logfile_last(const char *dir, long lines, size_t max)
{
	static const char *const names[] = {"log", "log.1"};
	struct logfile lf = {.o = {.tail = lines}};
	struct outbuf b = {0};
	char buf[16384];

	/* The end of the current log (or of the rotated one when the current is empty) is
	 * enough: the last lines are what a user needs to see why it ended. */
	for (size_t i = 0; i < 2 && b.len == 0; i++) {
		cleanup_free char *p = xasprintf("%s/%s", dir, names[i]);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		struct stat st;
		off_t off = 0;
		ssize_t n;

		if (fd == -1)
			continue;
		if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(buf))
			off = st.st_size - (off_t)sizeof(buf);
		n = pread(fd, buf, sizeof(buf), off);
		close(fd);
		if (n <= 0)
			continue;
		size_t k = 0;
		/* Start at a record boundary. */
		if (off > 0) {
			const char *nl = memchr(buf, '\n', (size_t)n);
			k = nl ? (size_t)(nl + 1 - buf) : (size_t)n;
		}
		decode(&lf, buf + k, (size_t)n - k, &b);
		if (lf.npart && b.len == 0)
			decode(&lf, "\n", 1, &b);
	}
	free(lf.part);
	if (b.len == 0) {
		free(b.p);
		return NULL;
	}
	size_t start = logfile_tail_start(b.p, b.len, lines);
	if (b.len - start > max) {
		/* Keep whole lines if one fits, else the last max bytes. */
		const char *nl = memchr(b.p + b.len - max, '\n', max);
		start = nl && nl + 1 < b.p + b.len ? (size_t)(nl + 1 - b.p) : b.len - max;
	}
	memmove(b.p, b.p + start, b.len - start);
	b.len -= start;
	/* Valid UTF-8 is what protobuf's string wants: anything else becomes '?'. */
	for (size_t i = 0; i < b.len; i++)
		if ((unsigned char)b.p[i] >= 0x80 ||
		    (b.p[i] < 0x20 && b.p[i] != '\n' && b.p[i] != '\t'))
			b.p[i] = '?';
	while (b.len > 0 && b.p[b.len - 1] == '\n')
		b.len--;
	b.p[b.len] = '\0';
	return b.p;
}
