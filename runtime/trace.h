#ifndef SHOAL_RUNTIME_TRACE_H
#define SHOAL_RUNTIME_TRACE_H

/*
 * Where a container start spends its time. With SHOALRT_TRACE=PATH in the environment, every
 * process on the start path (shoalrt or the agent, the shim, the container's child until its
 * execve) appends one line per phase it finishes to PATH:
 *     PHASE PID MONOTONIC_NS REALTIME_US
 * (CLOCK_MONOTONIC is one clock for every process of the host, so the lines of three
 * processes sort into one timeline; the wall clock lets a caller line them up with its own
 * timestamps, taken before the program's exec.) bench/runtime.sh prints the per-phase
 * medians. Unset, a mark costs one test of a static variable.
 */

/* Record that phase has just finished. The file is opened at the first mark (close-on-exec,
 * inherited by a forked child, which may then mark after pivot_root). */
void trace_mark(const char *phase);

/* Open the trace file now if asked for: a process about to lose its view of PATH
 * (before a pivot_root) calls this first. */
void trace_init(void);

/* The trace file's fd was closed (a forked child closing every fd it inherited): open the
 * file anew at the next mark, if it was open. */
void trace_reopen(void);

#endif
