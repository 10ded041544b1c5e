/*
 * The once-per-process set-up of the fuzz targets that speak the RPC protocol: libsodium
 * ready, SIGPIPE ignored (a peer that hangs up is an error return), and the log quiet, since a
 * warning per input would drown libFuzzer's output; SHOAL_FUZZ_LOG=1 shows every line when
 * replaying an input by hand. Header-only: a fuzz target is one .c file (the Makefile's fuzz
 * rule).
 */
#ifndef SHOAL_TESTS_FUZZ_INIT_H
#define SHOAL_TESTS_FUZZ_INIT_H

#include <signal.h>
#include <stdlib.h>

#include <sodium.h>

#include "log.h"

static inline void
fuzz_init_rpc(void)
{
	if (sodium_init() < 0)
		abort();
	signal(SIGPIPE, SIG_IGN);
	log_level = getenv("SHOAL_FUZZ_LOG") != NULL ? LOG_DEBUG : -1;
}

#endif
