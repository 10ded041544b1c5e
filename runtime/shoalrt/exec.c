/* shoalrt exec: run a command in a running container, confined as its init. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "err.h"
#include "fdio.h"
#include "runtime/container.h"
#include "verb.h"

static volatile sig_atomic_t winch = 1; /* 1: copy our terminal's size to the command's */

static void
on_winch(int sig)
{
	(void)sig;
	winch = 1;
}

/*
 * -t: relay our stdin (with -i) to the command's terminal and its output to our stdout, and
 * our window size to it (at once and on SIGWINCH), until the shim (pid) exits and the output
 * it left is read. Our own terminal, if stdin is one, is raw meanwhile: keys such as ^C reach
 * the command's terminal, whose line discipline makes them signals there.
 */
static void
relay_tty(int master, pid_t pid, bool input)
{
	struct termios saved, raw;
	bool restore = false, in_open = input, out_open = true, done = false;
	struct sigaction sa = {.sa_handler = on_winch};
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	char buf[16384];

	if (input && isatty(0) && tcgetattr(0, &saved) == 0) {
		raw = saved;
		cfmakeraw(&raw);
		restore = tcsetattr(0, TCSANOW, &raw) == 0;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGWINCH, &sa, NULL); /* no SA_RESTART: poll returns to take it */
	while (!done) {
		struct pollfd pf[3] = {{in_open ? 0 : -1, POLLIN, 0},
		                       {out_open ? master : -1, POLLIN, 0},
		                       {pidfd, POLLIN, 0}};
		struct winsize ws;

		if (winch) {
			winch = 0;
			if (ioctl(isatty(1) ? 1 : 0, TIOCGWINSZ, &ws) == 0)
				(void)ioctl(master, TIOCSWINSZ, &ws);
		}
		if (!out_open && pidfd == -1)
			break;
		if (poll(pf, 3, -1) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents) {
			ssize_t n = read(0, buf, sizeof(buf));
			if (n > 0) {
				(void)fdio_write_all(master, buf, (size_t)n);
			} else if (n == 0 || errno != EINTR) {
				struct termios t;
				/* Input ended (a pipe): the terminal's end-of-file key, so a shell
				 * reading it ends as it would at a keyboard. */
				in_open = false;
				if (tcgetattr(master, &t) == 0)
					(void)fdio_write_all(master, (const char *)&t.c_cc[VEOF],
					                     1);
			}
		}
		if (pf[1].revents) {
			ssize_t n = read(master, buf, sizeof(buf));
			if (n > 0)
				(void)fdio_write_all(1, buf, (size_t)n);
			else if (n == 0 || errno != EINTR)
				out_open = false; /* EIO: nothing holds the terminal any more */
		}
		if (pf[2].revents) {
			/* The shim exited: what the command wrote last is still in the master. */
			int fl = fcntl(master, F_GETFL);
			ssize_t n;

			(void)fcntl(master, F_SETFL, fl | O_NONBLOCK);
			while (out_open && (n = read(master, buf, sizeof(buf))) > 0)
				(void)fdio_write_all(1, buf, (size_t)n);
			done = true;
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	if (restore)
		(void)tcsetattr(0, TCSANOW, &saved);
}

static int
exec_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err;
	struct container *c;
	bool input = false, tty = false;
	int status, i = 1, sv[2] = {-1, -1}, master = -1;
	pid_t pid;

	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--interactive") == 0) {
			input = true;
			continue;
		}
		if (strcmp(argv[i], "--tty") == 0) {
			tty = true;
			continue;
		}
		for (const char *f = argv[i] + 1; *f; f++) {
			if (*f == 'i') {
				input = true;
			} else if (*f == 't') {
				tty = true;
			} else {
				fprintf(stderr, "shoalrt: exec: unknown option %s\n", argv[i]);
				return 125;
			}
		}
	}
	if (argc - i < 2) {
		fprintf(stderr, "shoalrt: exec: usage: shoalrt exec [-i] [-t] CONTAINER CMD...\n");
		return 125;
	}
	/* By name or id prefix here; the shim then works with the full id. */
	c = container_load(ctx->root, argv[i], &err);
	if (c == NULL) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		return 125;
	}
	if (tty && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		fprintf(stderr, "shoalrt: exec: socketpair: %s\n", strerror(errno));
		container_free(c);
		return 125;
	}
	/* Without -i its stdin is empty, as docker exec's. With -t the shim's own messages
	 * (the container is not running...) still come on our stderr. */
	pid = container_exec_start_tty(ctx->root, c->id, argv + i + 1,
	                               (const int[3]){input ? 0 : -1, 1, 2}, sv[1], &err);
	container_free(c);
	if (sv[1] >= 0)
		close(sv[1]);
	if (pid == -1) {
		fprintf(stderr, "shoalrt: exec: %s\n", err.msg);
		if (sv[0] >= 0)
			close(sv[0]);
		return 125;
	}
	/* Our terminal's ^C reaches the shim too (same process group): it ends the command. */
	signal(SIGINT, SIG_IGN);
	if (tty) {
		/* EOF without a terminal: the command never ran; the shim says why. */
		master = container_exec_recv_tty(sv[0]);
		close(sv[0]);
		if (master >= 0) {
			relay_tty(master, pid, input);
			close(master);
		}
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return 125;
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

SHOALRT_VERB(exec, "exec", "run a command in a running container",
             "usage: shoalrt exec [-i] [-t] CONTAINER CMD...\n\n"
             "Run CMD inside the running CONTAINER exactly as confined as its init: its\n"
             "namespaces and cgroups, capabilities, no_new_privs, seccomp filter, user,\n"
             "resource limits, environment and working directory. Its stdout and stderr are\n"
             "shoalrt's; its stdin is empty unless -i (--interactive) gives it shoalrt's.\n"
             "-t (--tty) runs it on a pseudo-terminal of the container's own /dev/pts (its\n"
             "controlling terminal, sized as ours and resized with it); with -i our terminal\n"
             "is raw meanwhile, so ^C and the like reach CMD, and restored after.\n"
             "Exits with CMD's status (128+N when killed by signal N), or 125 when the\n"
             "container cannot be entered, 126/127 when CMD cannot be run or is not found.\n",
             exec_main)
