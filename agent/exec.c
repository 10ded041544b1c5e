#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "err.h"
#include "log.h"
#include "logs.h"
#include "rpc.h"
#include "runtime/container.h"
#include "server.h"
#include "shoal.pb-c.h"
#include "util.h"

#define EXEC_DRAIN_MS 500 /* output still read after the command exited */

struct agent_exec {
	uint64_t id;
	struct logs *l;
	pid_t pid;  /* the shim exec child; 0 once reaped */
	int status; /* its exit status once reaped */
	int out[2]; /* read ends of its stdout, stderr; -1 at EOF */
	int pidfd;
	struct event *out_ev[2], *exit_ev, *drain_ev;
	struct agent_exec *next;
};

static void
send_output(struct logs *l, uint64_t id, int stream, const char *data, size_t len, bool exited,
            int code)
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
	for (int i = 0; i < 2; i++) {
		if (e->out_ev[i])
			event_free(e->out_ev[i]);
		if (e->out[i] >= 0)
			close(e->out[i]);
	}
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

static void
on_output(evutil_socket_t fd, short what, void *arg)
{
	struct agent_exec *e = arg;
	int i = fd == e->out[0] ? 0 : 1;
	char buf[65536];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		send_output(e->l, e->id, i + 1, buf, (size_t)n, false, 0);
		return;
	}
	event_free(e->out_ev[i]);
	e->out_ev[i] = NULL;
	close(e->out[i]);
	e->out[i] = -1;
	if (e->pid == 0 && e->out[0] < 0 && e->out[1] < 0)
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
	if (e->out[0] < 0 && e->out[1] < 0) {
		finish(e);
		return;
	}
	/* Something it started in the background may hold the pipes: what is there now is read,
	 * then the command is over. */
	e->drain_ev = evtimer_new(e->l->agent->base, on_drain, e);
	event_add(e->drain_ev, &tv);
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
	int p[2][2] = {{-1, -1}, {-1, -1}};
	int stdio[3] = {-1, -1, -1};

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
	for (int i = 0; i < 2; i++) {
		if (pipe2(p[i], O_CLOEXEC) == -1) {
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
	argv = xcalloc(req->n_argv + 1, sizeof(char *));
	for (size_t i = 0; i < req->n_argv; i++)
		argv[i] = req->argv[i];
	e = xcalloc(1, sizeof(*e));
	e->id = id;
	e->l = l;
	e->pidfd = -1;
	e->pid = container_exec_start(l->agent->tasks.root, t->container_id, argv, stdio, &err);
	free(argv);
	close(p[0][1]);
	close(p[1][1]);
	e->out[0] = p[0][0];
	e->out[1] = p[1][0];
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
