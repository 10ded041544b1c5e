#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "err.h"

static void
oom(size_t n)
{
	fprintf(stderr, "shoal: out of memory allocating %zu bytes\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t n)
{
	void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
	if (p == NULL)
		oom(nmemb * n);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *
xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		oom(strlen(s));
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) == -1)
		oom(strlen(fmt));
	va_end(ap);
	return p;
}

void
util_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "shoal: assertion failed: %s (%s:%d)\n", expr, file, line);
	abort();
}

void
util_freep(void *p)
{
	void **pp = p;
	free(*pp);
	*pp = NULL;
}

void
util_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int64_t
util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
util_read_file(const char *path, size_t *len, struct shoal_err *err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 4096, n = 0;
	char *buf;

	if (fd == -1) {
		err_set(err, errno, "open %s", path);
		return NULL;
	}
	buf = xmalloc(cap);
	for (;;) {
		ssize_t r;
		if (n + 1 >= cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			err_set(err, errno, "read %s", path);
			free(buf);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int
util_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                       struct shoal_err *err)
{
	cleanup_free char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	const char *p = data;

	if (fd == -1)
		return err_set(err, errno, "create %s", tmp);
	/* umask may have narrowed the mode; secrets rely on it being exact. */
	if (fchmod(fd, mode) == -1)
		goto fail;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) == -1)
		goto fail;
	if (rename(tmp, path) == -1)
		goto fail;
	return 0;
fail:
	err_set(err, errno, "write %s", path);
	unlink(tmp);
	return -1;
}

int
util_mkdir_p(const char *path, unsigned mode, struct shoal_err *err)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return err_set(err, ENAMETOOLONG, "mkdir %s", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) == -1 && errno != EEXIST)
			return err_set(err, errno, "mkdir %s", buf);
		*p = '/';
	}
	if (mkdir(buf, mode) == -1 && errno != EEXIST)
		return err_set(err, errno, "mkdir %s", buf);
	return 0;
}

int
util_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port,
                    struct shoal_err *err)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long p;

	if (colon == NULL)
		return err_set(err, 0, "%s: expected HOST:PORT", s);
	if ((size_t)(colon - s) >= hostlen)
		return err_set(err, 0, "%s: host too long", s);
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535)
		return err_set(err, 0, "%s: port must be 1-65535", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int
util_parse_duration_ms(const char *s, int64_t *ms, struct shoal_err *err)
{
	char *end;
	double v, mult;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v) || v < 0)
		return err_set(err, 0, "invalid duration \"%s\" (want a number and ms, s, m or h)",
		               s);
	if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else
		return err_set(err, 0, "invalid duration \"%s\" (want a number and ms, s, m or h)",
		               s);
	if (v * mult > 1e15)
		return err_set(err, 0, "duration \"%s\" too large", s);
	*ms = (int64_t)llround(v * mult);
	return 0;
}

int
util_parse_bytes(const char *s, int64_t *bytes, struct shoal_err *err)
{
	static const struct {
		const char *unit;
		double mult;
	} units[] = {
	    {"", 1},
	    {"Ki", 1024.0},
	    {"Mi", 1048576.0},
	    {"Gi", 1073741824.0},
	    {"Ti", 1099511627776.0},
	    {"k", 1e3},
	    {"K", 1e3},
	    {"M", 1e6},
	    {"G", 1e9},
	    {"T", 1e12},
	};
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v) || v < 0)
		goto bad;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v * units[i].mult > 9e18)
			return err_set(err, 0, "size \"%s\" too large", s);
		*bytes = (int64_t)llround(v * units[i].mult);
		return 0;
	}
bad:
	return err_set(err, 0, "invalid size \"%s\" (want a number with Ki, Mi, Gi, k, M or G)", s);
}

char *
util_format_bytes(int64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"Ki", "Mi", "Gi", "Ti"};
	double v = (double)bytes;
	int u = -1;

	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%lld", (long long)bytes);
	else if (v < 10 && v != (double)(int64_t)v)
		snprintf(buf, len, "%.1f%s", v, units[u]);
	else
		snprintf(buf, len, "%.0f%s", v, units[u]);
	return buf;
}

char *
util_format_age(int64_t ms, char *buf, size_t len)
{
	int64_t s = ms / 1000;

	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 7200)
		snprintf(buf, len, "%lldm", (long long)(s / 60));
	else if (s < 172800)
		snprintf(buf, len, "%lldh", (long long)(s / 3600));
	else
		snprintf(buf, len, "%lldd", (long long)(s / 86400));
	return buf;
}

uint32_t
util_random(uint32_t n)
{
	return n ? randombytes_uniform(n) : 0;
}

int64_t
util_jitter(int64_t value, int pct)
{
	int64_t span = value * pct / 100;

	if (span <= 0)
		return value;
	return value - span + (int64_t)util_random((uint32_t)(2 * span + 1));
}

void
util_hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

int
util_hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int
util_raise_nofile(uint64_t *soft, struct shoal_err *err)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return err_set(err, errno, "getrlimit RLIMIT_NOFILE");
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		/* An unlimited hard limit is still capped by fs.nr_open (1048576 by default). */
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			*soft = (uint64_t)was;
			return err_set(err, errno, "setrlimit RLIMIT_NOFILE to %llu",
			               (unsigned long long)rl.rlim_cur);
		}
	}
	*soft = (uint64_t)rl.rlim_cur;
	return 0;
}

uint64_t
util_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return 1024;
	return (uint64_t)rl.rlim_cur;
}
