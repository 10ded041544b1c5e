#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "err.h"
#include "log.h"
#include "logs-t.h"
#include "rpc.h"
#include "runtime/container.h"
#include "server-t.h"
#include "tasks.h"
#include "shoal.pb-c.h"
#include "util.h"

#define EXEC_DRAIN_MS  500         /* output still read after the command exited */
#define EXEC_INPUT_MAX (16u << 20) /* input held for a command that does not read it */

struct agent_exec {
	uint64_t id;
	struct logs *l;
	pid_t pid;  /* the shim exec child; 0 once reaped */
	int status; /* its exit status once reaped */
	/* read ends of its stdout, stderr, and (-t) its terminal's master, whose output is
	 * stdout's; -1 at EOF */
	int out[3];
	int pidfd;
	struct event *out_ev[3], *exit_ev, *drain_ev;
	/* -i: where its input goes (a pipe, or the master), what is not written yet, and
	 * whether the CLI's input ended; -1: no input (any more) */
	int in;
	struct evbuffer *inbuf;
	struct event *in_ev;
	bool in_eof;
	uint64_t written; /* input bytes written to the command: the CLI sends more as it grows */
	bool tty;
	/* -t: the socket the master comes down, until it has come; its size */
	int console;
	struct event *console_ev;
	struct winsize ws;
	struct agent_exec *next;
};

static void send_frame(struct logs *l, uint64_t id, int stream, const char *data, size_t len,
                       bool exited, int code, uint64_t written);

static void
send_output(struct logs *l, uint64_t id, int stream, const char *data, size_t len, bool exited,
            int code)
{
	send_frame(l, id, stream, data, len, exited, code, 0);
}

static void
send_frame(struct logs *l, uint64_t id, int stream, const char *data, size_t len, bool exited,
           int code, uint64_t written)
{
	struct session *s = &l->agent->session;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__ExecOutput eo = SHOAL__EXEC_OUTPUT__INIT;
	struct shoal_err err;

	if (s->conn == NULL)
		return;
	eo.data.data = (uint8_t *)data;
	eo.data.len = len;
	eo.stream = (uint32_t)stream;
	eo.exited = exited;
	eo.exit_code = code;
	eo.input_written = written;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_EXEC_OUTPUT;
	env.exec_output = &eo;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "exec: %s", err.msg);
}

static void
exec_free(struct agent_exec *e)
{
	for (struct agent_exec **p = &e->l->execs; *p; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			break;
		}
	}
	for (int i = 0; i < 3; i++) {
		if (e->out_ev[i])
			event_free(e->out_ev[i]);
		if (e->out[i] >= 0)
			close(e->out[i]);
	}
	if (e->in_ev)
		event_free(e->in_ev);
	if (e->in >= 0)
		close(e->in);
	if (e->inbuf)
		evbuffer_free(e->inbuf);
	if (e->console_ev)
		event_free(e->console_ev);
	if (e->console >= 0)
		close(e->console);
	if (e->exit_ev)
		event_free(e->exit_ev);
	if (e->drain_ev)
		event_free(e->drain_ev);
	if (e->pidfd >= 0)
		close(e->pidfd);
	if (e->pid > 0) {
		/* Still running (cancelled, or the session went): the shim's SIGTERM ends the
		 * command and what it started; reaping waits for that. */
		kill(e->pid, SIGTERM);
		while (waitpid(e->pid, NULL, 0) == -1 && errno == EINTR)
			;
	}
	free(e);
}

/* The command exited and its output is read (or the drain time is up): the last frame. */
static void
finish(struct agent_exec *e)
{
	int st = e->status;
	int code = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);

	send_output(e->l, e->id, 0, NULL, 0, true, code);
	exec_free(e);
}

/* Nothing more can come: every output at EOF, and no terminal still to come. */
static bool
outputs_done(const struct agent_exec *e)
{
	return e->out[0] < 0 && e->out[1] < 0 && e->out[2] < 0 && e->console < 0;
}

static void
on_output(evutil_socket_t fd, short what, void *arg)
{
	struct agent_exec *e = arg;
	int i = fd == e->out[0] ? 0 : fd == e->out[1] ? 1 : 2;
	char buf[65536];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		send_output(e->l, e->id, i == 1 ? 2 : 1, buf, (size_t)n, false, 0);
		return;
	}
	/* A master reads EIO once nothing holds its terminal any more: its EOF. */
	event_free(e->out_ev[i]);
	e->out_ev[i] = NULL;
	close(e->out[i]);
	e->out[i] = -1;
	if (e->pid == 0 && outputs_done(e))
		finish(e);
}

static void
on_drain(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	finish(arg);
}

static void
on_exit_ev(evutil_socket_t fd, short what, void *arg)
{
	struct agent_exec *e = arg;
	struct timeval tv = {0, EXEC_DRAIN_MS * 1000};

	(void)fd;
	(void)what;
	if (waitpid(e->pid, &e->status, WNOHANG) <= 0)
		return;
	e->pid = 0;
	event_del(e->exit_ev);
	if (outputs_done(e)) {
		finish(e);
		return;
	}
	/* Something it started in the background may hold the pipes: what is there now is read,
	 * then the command is over. */
	e->drain_ev = evtimer_new(e->l->agent->base, on_drain, e);
	event_add(e->drain_ev, &tv);
}

static void flush_input(struct agent_exec *e);

static void
on_input_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_input(arg);
}

/* The command's input ends: EOF on its pipe; on a terminal, its end-of-file key (a shell
 * reading it then ends as at a keyboard; the terminal itself stays, as the command's). */
static void
close_input(struct agent_exec *e)
{
	if (e->tty) {
		struct termios t;
		if (tcgetattr(e->in, &t) == 0)
			(void)!write(e->in, &t.c_cc[VEOF], 1);
	}
	if (e->in_ev) {
		event_free(e->in_ev);
		e->in_ev = NULL;
	}
	close(e->in);
	e->in = -1;
	evbuffer_drain(e->inbuf, evbuffer_get_length(e->inbuf));
}

/* Write what the CLI sent as far as the command takes it now; the rest when it can. */
static void
flush_input(struct agent_exec *e)
{
	uint64_t before = e->written;

	if (e->in < 0)
		return;
	while (evbuffer_get_length(e->inbuf) > 0) {
		int n = evbuffer_write(e->inbuf, e->in);
		if (n > 0) {
			e->written += (uint64_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			event_add(e->in_ev, NULL);
			break;
		}
		/* It closed its stdin (EPIPE): what it does not read goes. */
		close_input(e);
		return;
	}
	/* What the command took: the CLI reads on while it is at most a window ahead. */
	if (e->written != before)
		send_frame(e->l, e->id, 0, NULL, 0, false, 0, e->written);
	if (e->in_eof && evbuffer_get_length(e->inbuf) == 0)
		close_input(e);
}

/* The terminal's master came down the console socket: its output is read as stdout's, input
 * goes to it, and it gets the CLI's window size. */
static void
on_console(evutil_socket_t fd, short what, void *arg)
{
	struct agent_exec *e = arg;
	int m = container_exec_recv_tty((int)fd);

	(void)what;
	if (m == -1 && errno == EAGAIN)
		return;
	event_free(e->console_ev);
	e->console_ev = NULL;
	close(e->console);
	e->console = -1;
	if (m == -1) {
		/* The command never ran: the shim's status and stderr say why. */
		if (e->pid == 0 && outputs_done(e))
			finish(e);
		return;
	}
	if (e->ws.ws_row && e->ws.ws_col)
		(void)ioctl(m, TIOCSWINSZ, &e->ws);
	evutil_make_socket_nonblocking(m);
	e->out[2] = m;
	e->out_ev[2] = event_new(e->l->agent->base, m, EV_READ | EV_PERSIST, on_output, e);
	event_add(e->out_ev[2], NULL);
	if (e->inbuf) {
		e->in = fcntl(m, F_DUPFD_CLOEXEC, 0);
		if (e->in == -1) {
			shoal_log(LOG_WARNING, "exec: dup: %s", strerror(errno));
			return;
		}
		e->in_ev = event_new(e->l->agent->base, e->in, EV_WRITE, on_input_writable, e);
		flush_input(e);
	}
}

void
exec_input(struct logs *l, uint64_t id, const Shoal__ExecInput *in)
{
	struct agent_exec *e;

	for (e = l->execs; e; e = e->next)
		if (e->id == id)
			break;
	if (e == NULL)
		return; /* it ended meanwhile */
	if (in->rows && in->cols) {
		e->ws.ws_row = (unsigned short)in->rows;
		e->ws.ws_col = (unsigned short)in->cols;
		if (e->tty && e->out[2] >= 0)
			(void)ioctl(e->out[2], TIOCSWINSZ, &e->ws);
	}
	if (e->inbuf == NULL || e->in_eof)
		return;
	if (in->data.len) {
		if (evbuffer_get_length(e->inbuf) + in->data.len > EXEC_INPUT_MAX) {
			static const char msg[] = "shoal exec: the command does not read its input "
			                          "(16 MiB held): its stdin is closed\n";
			send_output(l, id, 2, msg, sizeof(msg) - 1, false, 0);
			e->in_eof = true;
			if (e->in >= 0)
				close_input(e);
			return;
		}
		evbuffer_add(e->inbuf, in->data.data, in->data.len);
	}
	if (in->eof)
		e->in_eof = true;
	flush_input(e);
}

static void refuse(struct logs *l, uint64_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The command never ran: say why on its stderr, and exit 126 as a shell would. */
static void
refuse(struct logs *l, uint64_t id, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_output(l, id, 2, msg, strlen(msg), false, 0);
	send_output(l, id, 0, NULL, 0, true, 126);
}

void
exec_request(struct logs *l, uint64_t id, const Shoal__ExecRequest *req)
{
	struct agent_task *t;
	struct agent_exec *e;
	struct shoal_err err;
	char **argv;
	int p[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
	int stdio[3] = {-1, -1, -1};
	int np = req->stdin && !req->tty ? 3 : 2;

	if (req->cancel) {
		for (e = l->execs; e; e = e->next)
			if (e->id == id) {
				exec_free(e);
				break;
			}
		return;
	}
	t = tasks_find(&l->agent->tasks, req->task);
	if (t == NULL || t->state != ATASK_RUNNING || t->container_id[0] == '\0') {
		refuse(l, id, "shoal exec: task %s is not running on %s\n", req->task,
		       l->agent->name);
		return;
	}
	if (req->n_argv == 0) {
		refuse(l, id, "shoal exec: no command\n");
		return;
	}
	/* p[2]: its stdin (-i without -t), or (-t) the console socket */
	for (int i = 0; i < np + (req->tty ? 1 : 0); i++) {
		if ((i == 2 ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p[i])
		            : pipe2(p[i], O_CLOEXEC)) == -1) {
			refuse(l, id, "shoal exec: pipe: %s\n", strerror(errno));
			for (int k = 0; k < i; k++) {
				close(p[k][0]);
				close(p[k][1]);
			}
			return;
		}
	}
	stdio[1] = p[0][1];
	stdio[2] = p[1][1];
	if (!req->tty && req->stdin)
		stdio[0] = p[2][0];
	argv = xcalloc(req->n_argv + 1, sizeof(char *));
	for (size_t i = 0; i < req->n_argv; i++)
		argv[i] = req->argv[i];
	e = xcalloc(1, sizeof(*e));
	e->id = id;
	e->l = l;
	e->pidfd = -1;
	e->in = -1;
	e->console = -1;
	e->out[2] = -1;
	e->tty = req->tty;
	e->ws.ws_row = (unsigned short)req->rows;
	e->ws.ws_col = (unsigned short)req->cols;
	e->pid = container_exec_start_tty(l->agent->tasks.root, t->container_id, argv, stdio,
	                                  req->tty ? p[2][1] : -1, &err);
	free(argv);
	close(p[0][1]);
	close(p[1][1]);
	e->out[0] = p[0][0];
	e->out[1] = p[1][0];
	if (req->tty) {
		close(p[2][1]);
		e->console = p[2][0];
	} else if (req->stdin) {
		close(p[2][0]);
		e->in = p[2][1];
	}
	if (req->stdin)
		e->inbuf = evbuffer_new();
	e->next = l->execs;
	l->execs = e;
	if (e->pid == -1) {
		e->pid = 0;
		refuse(l, id, "shoal exec: %s\n", err.msg);
		exec_free(e);
		return;
	}
	e->pidfd = (int)syscall(SYS_pidfd_open, e->pid, 0);
	if (e->pidfd == -1) {
		refuse(l, id, "shoal exec: pidfd_open: %s\n", strerror(errno));
		exec_free(e);
		return;
	}
	shoal_log(LOG_INFO, "exec in %s: %s%s", t->name, req->argv[0],
	          req->n_argv > 1 ? " ..." : "");
	if (e->in >= 0) {
		evutil_make_socket_nonblocking(e->in);
		e->in_ev = event_new(l->agent->base, e->in, EV_WRITE, on_input_writable, e);
	}
	if (e->console >= 0) {
		evutil_make_socket_nonblocking(e->console);
		e->console_ev =
		    event_new(l->agent->base, e->console, EV_READ | EV_PERSIST, on_console, e);
		event_add(e->console_ev, NULL);
	}
	for (int i = 0; i < 2; i++) {
		evutil_make_socket_nonblocking(e->out[i]);
		e->out_ev[i] =
		    event_new(l->agent->base, e->out[i], EV_READ | EV_PERSIST, on_output, e);
		event_add(e->out_ev[i], NULL);
	}
	e->exit_ev = event_new(l->agent->base, e->pidfd, EV_READ | EV_PERSIST, on_exit_ev, e);
	event_add(e->exit_ev, NULL);
}

void
exec_reset(struct logs *l)
{
	while (l->execs)
		exec_free(l->execs);
}
