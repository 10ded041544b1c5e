#ifndef SHOAL_COMMON_ERR_H
#define SHOAL_COMMON_ERR_H

/*
 * The error contract (crun's): a function that can fail takes
 * `struct shoal_err *err` last, returns 0 / a pointer on success and -1 / NULL
 * on failure, and fills *err. Nothing to free: a forked child can write the
 * struct down a pipe as is. Callers add context on the way up with
 * err_prefix(), so the message reads like a path.
 */
struct shoal_err {
	int code;      /* errno, or 0 when the failure is not a system error */
	char msg[256]; /* human-readable, NUL-terminated, never holds secrets */
};

/*
 * Error.code of a reply from a scheduler that does not lead (several schedulers on etcd):
 * Error.leader names the one that does ("H:P", "" while none does) and the client goes
 * there. Far above any errno so it cannot be mistaken for one.
 */
#define SHOAL_ENOTLEADER 10001

/* Set *err to fmt; when code is non-zero, append ": strerror(code)". Returns -1. */
int err_set(struct shoal_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with fmt and ": ". Returns -1. */
int err_prefix(struct shoal_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clear *err (no error). */
void err_clear(struct shoal_err *err);

#endif
