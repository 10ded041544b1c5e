#ifndef SHOAL_CLI_APPLY_H
#define SHOAL_CLI_APPLY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cli_ctx;
struct manifest_errors;

extern const char apply_usage[];

/* What one `shoal apply` sends: every service's canonical JSON, in file and document order. */
struct apply_request {
	char **specs_json; /* owned, n of them */
	size_t n;
};

/*
 * Parse every file ("-" reads in, named <stdin> in messages) and check that their services can
 * coexist. On success fills *out (free with apply_request_free) and returns 0. On any error
 * appends every FILE:LINE:COL line to *errs, leaves *out empty and returns -1: nothing is to be
 * sent then.
 */
int apply_build(const char *const *files, size_t nfiles, FILE *in, struct apply_request *out,
                struct manifest_errors *errs);
void apply_request_free(struct apply_request *r);

/* A port a service of the cluster publishes now. */
struct apply_owner {
	uint16_t port;
	const char *service;
};

/* apply_build, also refusing a manifest port that another service of the cluster publishes
 * (owners, n of them), at the FILE:LINE:COL of that port. */
int apply_build_owned(const char *const *files, size_t nfiles, FILE *in,
                      const struct apply_owner *owners, size_t nowners, struct apply_request *out,
                      struct manifest_errors *errs);

/* `shoal apply -f FILE|- ...`: create or update services, all or nothing. */
int apply_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
