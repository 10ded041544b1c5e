/* shoalrt pull, push, import: run by shoalrt-image (delegate.h says why). Linked into shoalrt
 * only; shoalrt-image has the verbs themselves. */
#include "delegate.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "verb.h"

int
shoalrt_delegate(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	char self[PATH_MAX], path[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	(void)argc;
	if (n <= 0) {
		fprintf(stderr, "shoalrt: %s: cannot find shoalrt-image: /proc/self/exe: %s\n",
		        argv[0], strerror(errno));
		return 1;
	}
	self[n] = '\0';
	snprintf(path, sizeof(path), "%s/shoalrt-image", dirname(self));
	/* The whole command line, global options included: stdio, environment and exit status
	 * pass through as if shoalrt had run the verb itself. */
	execv(path, ctx->argv);
	fprintf(stderr, "shoalrt: %s needs %s: %s\n", argv[0], path, strerror(errno));
	return 1;
}

SHOALRT_VERB(pull, "pull", PULL_SUMMARY, PULL_USAGE, shoalrt_delegate)
SHOALRT_VERB(push, "push", PUSH_SUMMARY, PUSH_USAGE, shoalrt_delegate)
SHOALRT_VERB(import, "import", IMPORT_SUMMARY, IMPORT_USAGE, shoalrt_delegate)
