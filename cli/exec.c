#include "exec.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <event2/event.h>

#include "fdio.h"
#include "client.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "util.h"
#include "version.h"

const char exec_usage[] =
    "usage: shoal exec [-i] [-t] TASK|SERVICE.SLOT [--] CMD [ARG...]\n"
    "\n"
    "Run CMD inside a running task's container, on its node, exactly as confined as the\n"
    "container's own process (its namespaces, cgroups, capabilities, no_new_privs, seccomp\n"
    "filter, user, environment and working directory). Its stdout and stderr are printed\n"
    "here; shoal exits with CMD's status (126: CMD could not be run, 127: not found,\n"
    "128+N: killed by signal N; 1: shoal's own error). ^C ends CMD.\n"
    "\n"
    "  -i, --interactive  send our stdin to CMD (else its stdin is empty)\n"
    "  -t, --tty          run CMD on a pseudo-terminal of the container's own /dev/pts (its\n"
    "                     controlling terminal), sized as ours; with -i our terminal is raw\n"
    "                     meanwhile (keys such as ^C go to CMD) and follows our resizes\n";

const char version_usage[] =
    "usage: shoal version\n"
    "\n"
    "Print this client's version and the scheduler's (`shoal --version`: the client's only).\n";

/* -i: input sent ahead of what the command has taken (the agent says, input_written). */
#define EXEC_WINDOW (4u << 20)

struct exec_state {
	int code;
	bool input, tty;
	bool in_done;  /* stdin's EOF sent */
	bool pollable; /* stdin is read on events (else a file, read when the window opens) */
	uint64_t sent, taken;
	struct rpc_conn *c; /* once the request is sent */
	uint64_t id;
	struct event *in_ev, *winch_ev;
};

static void pump_input(struct exec_state *st);

static enum rpc_call_action
exec_on_message(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	struct exec_state *st = arg;
	const Shoal__ExecOutput *eo;

	if (env->body_case != SHOAL__ENVELOPE__BODY_EXEC_OUTPUT) {
		err_set(err, 0, "unexpected reply from the scheduler");
		return RPC_CALL_FAIL;
	}
	eo = env->exec_output;
	if (eo->input_written > st->taken) {
		st->taken = eo->input_written;
		pump_input(st);
	}
	if (eo->data.len)
		(void)fdio_write_all(eo->stream == 2 ? 2 : 1, eo->data.data, eo->data.len);
	if (!eo->exited)
		return RPC_CALL_MORE;
	st->code = eo->exit_code;
	return RPC_CALL_STOP;
}

static void
send_input(struct exec_state *st, const uint8_t *data, size_t len, bool eof, bool resize)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__ExecInput in = SHOAL__EXEC_INPUT__INIT;
	struct winsize ws;
	struct shoal_err err;

	in.data.data = (uint8_t *)data;
	in.data.len = len;
	in.eof = eof;
	if (resize && ioctl(isatty(1) ? 1 : 0, TIOCGWINSZ, &ws) == 0) {
		in.rows = ws.ws_row;
		in.cols = ws.ws_col;
	}
	env.id = st->id;
	env.body_case = SHOAL__ENVELOPE__BODY_EXEC_INPUT;
	env.exec_input = &in;
	/* A failed send closes the connection: the stream ends with that error. */
	(void)rpc_send(st->c, &env, &err);
}

static bool
window_open(const struct exec_state *st)
{
	return st->sent - st->taken < EXEC_WINDOW;
}

/* Read what stdin has and send it; at EOF, say so once. Returns false at EOF. */
static bool
read_input(struct exec_state *st)
{
	uint8_t buf[16384];
	ssize_t n = read(0, buf, sizeof(buf));

	if (n > 0) {
		send_input(st, buf, (size_t)n, false, false);
		st->sent += (uint64_t)n;
		return true;
	}
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return true;
	send_input(st, NULL, 0, true, false);
	st->in_done = true;
	return false;
}

/* Read on while the command keeps up: a window ahead of it at most, so neither we nor the
 * agent hold what a slow reader has not taken. */
static void
pump_input(struct exec_state *st)
{
	if (!st->input || st->in_done || st->c == NULL)
		return;
	if (st->pollable) {
		if (window_open(st))
			event_add(st->in_ev, NULL);
		return;
	}
	/* A file, or /dev/null: a read never blocks. */
	while (!st->in_done && window_open(st))
		(void)read_input(st);
}

static void
on_stdin(evutil_socket_t fd, short what, void *arg)
{
	struct exec_state *st = arg;

	(void)fd;
	(void)what;
	if (!read_input(st) || !window_open(st))
		event_del(st->in_ev);
}

static void
on_winch(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	send_input(arg, NULL, 0, false, true);
}

static void
exec_ready(struct event_base *base, struct rpc_conn *c, uint64_t id, void *arg)
{
	struct exec_state *st = arg;

	st->c = c;
	st->id = id;
	if (st->tty && isatty(1)) {
		st->winch_ev = evsignal_new(base, SIGWINCH, on_winch, st);
		event_add(st->winch_ev, NULL);
	}
	if (!st->input)
		return;
	st->in_ev = event_new(base, 0, EV_READ | EV_PERSIST, on_stdin, st);
	st->pollable = event_add(st->in_ev, NULL) == 0;
	if (!st->pollable) {
		/* A file or /dev/null, which epoll refuses. */
		event_free(st->in_ev);
		st->in_ev = NULL;
		pump_input(st);
	}
}

static void
exec_end(void *arg)
{
	struct exec_state *st = arg;

	if (st->in_ev)
		event_free(st->in_ev);
	if (st->winch_ev)
		event_free(st->winch_ev);
	st->in_ev = st->winch_ev = NULL;
}

static struct termios saved_tty;
static volatile sig_atomic_t tty_raw;

static void
restore_tty(void)
{
	if (tty_raw)
		(void)tcsetattr(0, TCSANOW, &saved_tty);
	tty_raw = false;
}

/* Killed while our terminal is raw: put it back first (tcsetattr is async-signal-safe), then
 * die of the signal as we would have. */
static void
on_fatal_signal(int sig)
{
	if (tty_raw)
		(void)tcsetattr(0, TCSANOW, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

int
exec_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ExecRequest er = SHOAL__EXEC_REQUEST__INIT;
	static const struct rpc_call_io io = {exec_ready, exec_end};
	struct exec_state st = {.code = 1};
	struct shoal_err err;
	struct winsize ws;
	int i = 1, rc;

	for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--interactive") == 0) {
			st.input = true;
			continue;
		}
		if (strcmp(argv[i], "--tty") == 0) {
			st.tty = true;
			continue;
		}
		for (const char *f = argv[i] + 1; *f; f++) {
			if (*f == 'i') {
				st.input = true;
			} else if (*f == 't') {
				st.tty = true;
			} else {
				fprintf(stderr, "shoal exec: unknown option %s\n%s", argv[i],
				        exec_usage);
				return 1;
			}
		}
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
	er.stdin = st.input;
	er.tty = st.tty;
	if (st.tty && ioctl(isatty(1) ? 1 : 0, TIOCGWINSZ, &ws) == 0) {
		er.rows = ws.ws_row;
		er.cols = ws.ws_col;
	}
	req.body_case = SHOAL__ENVELOPE__BODY_EXEC;
	req.exec = &er;
	/* Keys go to the command's terminal as they are typed, ^C included, and its terminal
	 * echoes them: ours must not do either meanwhile (docker exec -it does the same). */
	if (st.tty && st.input && isatty(0) && tcgetattr(0, &saved_tty) == 0) {
		struct termios raw = saved_tty;
		cfmakeraw(&raw);
		tty_raw = tcsetattr(0, TCSANOW, &raw) == 0;
		atexit(restore_tty);
		signal(SIGTERM, on_fatal_signal);
		signal(SIGHUP, on_fatal_signal);
		signal(SIGQUIT, on_fatal_signal);
	}
	/* The command runs as long as it runs: no idle limit once connected. */
	rc = client_stream(ctx, &req, 0, exec_on_message, &io, &st, &err);
	restore_tty();
	if (rc == -1) {
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
