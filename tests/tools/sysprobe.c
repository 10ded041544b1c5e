/*
 * sysprobe: try the syscalls a hostile container would, and print one line per probe:
 * "NAME ok" or "NAME ERRNO-NAME". tests/integration/hostile_runtime.bats builds it statically
 * (cc -static) into an image layer and runs it inside a container, where the seccomp filter
 * must refuse each hostile probe; the last probes must keep working.
 *
 * "sysprobe forkbomb": fork until fork fails, children sleeping; print "forkbomb N ERRNO" with
 * N the processes made (this one included), then sleep: the pids limit must stop it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/sched.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *
errname(int e)
{
	switch (e) {
	case 0:
		return "ok";
	case EPERM:
		return "EPERM";
	case ENOSYS:
		return "ENOSYS";
	case EINVAL:
		return "EINVAL";
	case EFAULT:
		return "EFAULT";
	case EAFNOSUPPORT:
		return "EAFNOSUPPORT";
	case EAGAIN:
		return "EAGAIN";
	default:
		return strerror(e);
	}
}

static void
report(const char *name, long rc)
{
	printf("%s %s\n", name, errname(rc == -1 ? errno : 0));
}

static int
forkbomb(void)
{
	long n = 1;

	for (;;) {
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid == -1)
			break;
		n++;
	}
	printf("forkbomb %ld %s\n", n, errname(errno));
	pause();
	return 0;
}

int
main(int argc, char **argv)
{
	char params[120] = {0}; /* struct io_uring_params */
	long rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && strcmp(argv[1], "forkbomb") == 0)
		return forkbomb();
	report("io_uring_setup", syscall(425, 4, params));
	report("socket_vsock", syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0));
	report("socket_vsock_high", syscall(SYS_socket, (1UL << 32) | AF_VSOCK, SOCK_STREAM, 0));
	report("personality_read_implies_exec", syscall(SYS_personality, READ_IMPLIES_EXEC));
	report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
	report("clone3", syscall(435, NULL, 0));
	/* Must keep working: */
	report("socket_inet", syscall(SYS_socket, AF_INET, SOCK_STREAM, 0));
	report("personality_query", syscall(SYS_personality, 0xffffffffUL));
	rc = fork();
	if (rc == 0)
		_exit(0);
	if (rc > 0)
		waitpid((pid_t)rc, NULL, 0);
	report("fork", rc == -1 ? -1 : 0);
	return 0;
}
