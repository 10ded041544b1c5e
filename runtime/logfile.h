#ifndef SHOAL_RUNTIME_LOGFILE_H
#define SHOAL_RUNTIME_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct shoal_err;

/*
 * A container's output as the shim writes it: DIR/log, rotated to DIR/log.1 at
 * CONTAINER_LOG_MAX, one record per line in the CRI logging format
 *
 *   2026-12-04T10:24:24.123456789Z stderr F FATAL: no config
 *
 * (time the shim read it, stream, F for a full line or P for a fragment the next record of
 * that stream continues, the bytes). The time per line is what `logs -t` and `--since` need;
 * the format is the one kubelet writes, so its tools read it. Lines of an older raw log (no
 * record header) are returned as they are.
 *
 * Shared by the shim (writer), `shoalrt logs` and the agent's log service (readers).
 */

/* Room for one record header: the time, a space, "stdout", a space, F|P, a space. */
#define LOGFILE_HEADER_MAX 48

/* Format data (one read from stream 1 = stdout, 2 = stderr at wall time ns) as records into
 * out (at least len + LOGFILE_HEADER_MAX * (lines + 1) bytes); returns the bytes written. */
size_t logfile_encode(char *out, int stream, int64_t ns, const char *data, size_t len);

/* How to read. */
struct logfile_opts {
	long tail;        /* last N lines; < 0 everything */
	int64_t since_ms; /* skip lines written before this wall time; 0 everything */
	bool timestamps;  /* prefix each line with its RFC 3339 time and a space */
};

struct logfile {
	char *path; /* DIR/log */
	int fd;     /* the current log, positioned after what was returned; -1 if none yet */
	ino_t ino;  /* its inode, to notice a rotation */
	struct logfile_opts o;
	char *part; /* an incomplete record read from the file, waiting for its end */
	size_t npart;
	bool mid[3];  /* stream i (1, 2) ended on a fragment: its next record continues a line */
	bool skip[3]; /* ... of a line --since skips */
};

/*
 * Open dir's log and return its decoded last o->tail lines (log.1 then log) in *head
 * (malloc'd, *len bytes). Afterwards logfile_read returns what is written next.
 */
int logfile_open(struct logfile *lf, const char *dir, const struct logfile_opts *o, char **head,
                 size_t *len, struct shoal_err *err);

/* Decoded new output (malloc'd, *len bytes), following a rotation; NULL when none. */
char *logfile_read(struct logfile *lf, size_t *len);

void logfile_close(struct logfile *lf);

/* Where the last tail lines of buf start (a final newline ends a line, it starts none). */
size_t logfile_tail_start(const char *buf, size_t len, long tail);

/* The last lines (at most max bytes) of dir's log as text, non-ASCII bytes as '?', no final
 * newline (malloc'd), or NULL when it wrote nothing: the task's last words for its record. */
char *logfile_last(const char *dir, long lines, size_t max);

#endif
