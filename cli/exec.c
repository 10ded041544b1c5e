#include "exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "util.h"
#include "version.h"

const char exec_usage[] =
    "usage: shoal exec TASK|SERVICE.SLOT [--] CMD [ARG...]\n"
    "\n"
    "Run CMD inside a running task's container, on its node, exactly as confined as the\n"
    "container's own process (its namespaces, cgroups, capabilities, no_new_privs, seccomp\n"
    "filter, user, environment and working directory). Its stdout and stderr are printed\n"
    "here, its stdin is empty; shoal exits with CMD's status (126: CMD could not be run,\n"
    "127: not found, 128+N: killed by signal N; 1: shoal's own error). ^C ends CMD.\n";

const char version_usage[] =
    "usage: shoal version\n"
    "\n"
    "Print this client's version and the scheduler's (`shoal --version`: the client's only).\n";

struct exec_state {
	int code;
};

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static enum client_stream_action
exec_on_message(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	struct exec_state *st = arg;
	const Shoal__ExecOutput *eo;

	if (env->body_case != SHOAL__ENVELOPE__BODY_EXEC_OUTPUT) {
		err_set(err, 0, "unexpected reply from the scheduler");
		return CLIENT_STREAM_FAIL;
	}
	eo = env->exec_output;
	if (eo->data.len)
		(void)write_all(eo->stream == 2 ? 2 : 1, eo->data.data, eo->data.len);
	if (!eo->exited)
		return CLIENT_STREAM_MORE;
	st->code = eo->exit_code;
	return CLIENT_STREAM_STOP;
}

int
exec_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ExecRequest er = SHOAL__EXEC_REQUEST__INIT;
	struct exec_state st = {.code = 1};
	struct shoal_err err;
	int i = 1;

	if (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--") != 0) {
		fprintf(stderr, "shoal exec: unknown option %s (-it is not supported yet)\n%s",
		        argv[i], exec_usage);
		return 1;
	}
	if (i >= argc || strcmp(argv[i], "--") == 0) {
		fprintf(stderr, "shoal exec: want a TASK and a command\n%s", exec_usage);
		return 1;
	}
	er.task = argv[i++];
	if (i < argc && strcmp(argv[i], "--") == 0)
		i++;
	if (i >= argc) {
		fprintf(stderr, "shoal exec: want a command after the TASK\n%s", exec_usage);
		return 1;
	}
	er.argv = argv + i;
	er.n_argv = (size_t)(argc - i);
	req.body_case = SHOAL__ENVELOPE__BODY_EXEC;
	req.exec = &er;
	/* The command runs as long as it runs: no idle limit once connected. */
	if (client_stream(ctx, &req, 0, exec_on_message, &st, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return 1;
	}
	return st.code;
}

int
version_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__GetVersion gv = SHOAL__GET_VERSION__INIT;
	Shoal__Envelope *reply = NULL;
	struct shoal_err err;
	int rc = 0;

	if (argc > 1) {
		fprintf(stderr, "shoal version: unexpected argument %s\n%s", argv[1],
		        version_usage);
		return 1;
	}
	printf("client:    %s\n", version_string());
	fflush(stdout);
	req.body_case = SHOAL__ENVELOPE__BODY_GET_VERSION;
	req.get_version = &gv;
	if (client_call(ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: scheduler: %s\n", err.msg);
		return 1;
	}
	if (reply->body_case == SHOAL__ENVELOPE__BODY_OK) {
		printf("scheduler: %s\n", reply->ok->message);
	} else {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		rc = 1;
	}
	shoal__envelope__free_unpacked(reply, NULL);
	return rc;
}
