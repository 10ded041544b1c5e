/*
 * apply_raw: send one Apply with the given spec JSON strings as they are, past the CLI's
 * checks, as a client holding the admin token could. For hostile_apply.bats.
 *   apply_raw HOST:PORT TOKEN_FILE JSON|@FILE...
 * Prints "service NAME ACTION" per change and exits 0, or prints the Error reply's message
 * and exits 1 (2 when the call itself failed).
 */
#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "cli/client.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "util.h"

int
main(int argc, char **argv)
{
	struct cli_ctx ctx = {.timeout_ms = 5000};
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__Apply ap = SHOAL__APPLY__INIT;
	Shoal__Envelope *reply = NULL;
	struct shoal_err err;
	int rc = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: apply_raw HOST:PORT TOKEN_FILE JSON|@FILE...\n");
		return 2;
	}
	if (sodium_init() < 0)
		return 2;
	ctx.scheduler = argv[1];
	ctx.token_file = argv[2];
	/* @FILE: the spec from a file, for one larger than an argument may be (128 KiB). */
	for (int i = 3; i < argc; i++) {
		if (argv[i][0] != '@')
			continue;
		argv[i] = util_read_file(argv[i] + 1, NULL, &err);
		if (argv[i] == NULL) {
			fprintf(stderr, "apply_raw: %s\n", err.msg);
			return 2;
		}
	}
	ap.specs_json = argv + 3;
	ap.n_specs_json = (size_t)(argc - 3);
	req.body_case = SHOAL__ENVELOPE__BODY_APPLY;
	req.apply = &ap;
	if (client_call_raw(&ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "apply_raw: %s\n", err.msg);
		return 2;
	}
	if (reply->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		printf("%s\n", reply->error->message);
		rc = 1;
	} else if (reply->body_case == SHOAL__ENVELOPE__BODY_APPLY_REPLY) {
		for (size_t i = 0; i < reply->apply_reply->n_changes; i++)
			printf("service %s %s\n", reply->apply_reply->changes[i]->name,
			       reply->apply_reply->changes[i]->action);
	} else {
		fprintf(stderr, "apply_raw: unexpected reply\n");
		rc = 2;
	}
	shoal__envelope__free_unpacked(reply, NULL);
	return rc;
}
