#ifndef SHOAL_COMMON_UTIL_H
#define SHOAL_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

struct shoal_err;

/* Allocation failure aborts (crun and redis do the same). */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Always-on invariant check (redis serverAssert): never for input. */
#define SHOAL_ASSERT(cond)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			util_assert_fail(#cond, __FILE__, __LINE__);                               \
	} while (0)
void util_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* Cleanup attributes for locals (crun's cleanup_free / cleanup_close). */
void util_freep(void *p);
void util_closep(int *fd);
#define cleanup_free  __attribute__((cleanup(util_freep)))
#define cleanup_close __attribute__((cleanup(util_closep)))

/* Hand a cleanup_close fd to the caller. */
static inline int
steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

/* Hand a cleanup_free pointer to the caller. */
static inline void *
steal_ptr(void *pp)
{
	void **p = pp;
	void *r = *p;
	*p = NULL;
	return r;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic and wall-clock time in milliseconds. */
int64_t util_now_ms(void);
int64_t util_wall_ms(void);

/* Read a whole file (NUL-terminated, size in *len if non-NULL). Caller frees. */
char *util_read_file(const char *path, size_t *len, struct shoal_err *err);

/* Write data to path atomically (temp file, fsync, rename) with the given mode. */
int util_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                           struct shoal_err *err);

/* mkdir -p with mode for every created component. */
int util_mkdir_p(const char *path, unsigned mode, struct shoal_err *err);

/* Parse "HOST:PORT" (HOST may be empty or an IPv4 address) into host and port. */
int util_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port,
                        struct shoal_err *err);

/* Parse a duration: a number with a unit ms, s, m or h ("1500ms", "2s", "1.5m"). */
int util_parse_duration_ms(const char *s, int64_t *ms, struct shoal_err *err);

/* Parse a byte size: plain bytes or with a unit Ki Mi Gi (binary) or k M G (decimal). */
int util_parse_bytes(const char *s, int64_t *bytes, struct shoal_err *err);

/* Format bytes as "1.5Gi", "512Mi", "100"; returns buf. */
char *util_format_bytes(int64_t bytes, char *buf, size_t len);

/* Format an age in ms as "5s", "3m", "2h", "4d"; returns buf. */
char *util_format_age(int64_t ms, char *buf, size_t len);

/* Uniform random value in [0, n) from libsodium. */
uint32_t util_random(uint32_t n);

/* Return a value jittered by +/- pct percent. */
int64_t util_jitter(int64_t value, int pct);

/* Hex-encode len bytes into out (2*len+1 bytes). */
void util_hex(const uint8_t *in, size_t len, char *out);
/* The value of one hex digit (either case), or -1. */
int util_hexval(char ch);

/*
 * Raise RLIMIT_NOFILE's soft limit to its hard limit, as a daemon serving many connections
 * must at start: distributions default the soft limit to 1024, which ~500 idle clients of the
 * proxy (two fds each) or ~1000 of the scheduler exhaust. The soft limit in effect lands in
 * *soft either way; -1 (with err) when it could not be raised.
 */
int util_raise_nofile(uint64_t *soft, struct shoal_err *err);

/* RLIMIT_NOFILE's soft limit now (1024 when unknown or unlimited). */
uint64_t util_nofile(void);

#endif
