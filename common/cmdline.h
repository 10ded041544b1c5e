#ifndef SHOAL_COMMON_CMDLINE_H
#define SHOAL_COMMON_CMDLINE_H

#include <stdbool.h>

/*
 * What every program's getopt_long loop shares, so each says it the same way (prog names
 * the program in the messages: "shoal-agent proxy").
 */

/* --log-level VALUE: the level; -1 after "PROG: unknown log level VALUE" on stderr. */
int cmdline_log_level(const char *prog, const char *value);
/* The loop's -h (c == 'h': usage on stdout, returns 0) or an option getopt refused (usage on
 * stderr, returns 1): the exit status. */
int cmdline_usage(int c, const char *usage);
/* After the loop: true when getopt took every argument, else false after "PROG: unexpected
 * argument X" on stderr. */
bool cmdline_no_rest(const char *prog, int argc, char **argv);

#endif
