#ifndef SHOAL_RUNTIME_LOGFILE_H
#define SHOAL_RUNTIME_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct shoal_err;

/*
 * Reading a container's output as the shim writes it: DIR/log, rotated to DIR/log.1 at
 * CONTAINER_LOG_MAX. Shared by `shoalrt logs` and the agent's log service.
 */
struct logfile {
	char *path; /* DIR/log */
	int fd;     /* the current log, positioned after what was returned; -1 if none yet */
	ino_t ino;  /* its inode, to notice a rotation */
};

/*
 * Open dir's log and return its last tail lines (tail < 0: everything, log.1 then log) in
 * *head (malloc'd, *len bytes). Afterwards logfile_read returns what is written next.
 */
int logfile_open(struct logfile *lf, const char *dir, long tail, char **head, size_t *len,
                 struct shoal_err *err);

/* Read new output into buf (up to cap); follows a rotation. Returns bytes read, 0 if none. */
size_t logfile_read(struct logfile *lf, char *buf, size_t cap);

void logfile_close(struct logfile *lf);

/* Where the last tail lines of buf start (a final newline ends a line, it starts none). */
size_t logfile_tail_start(const char *buf, size_t len, long tail);

#endif
