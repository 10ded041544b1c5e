/* Unit tests for runtime/seccomp: the default filter compiles (and gives libseccomp's heap
 * back), is cached on disk, and the cached copy is what the next process loads; installed in
 * a child, it is an allowlist that refuses what Docker's default profile refuses (and
 * io_uring), answers ENOSYS to syscalls newer than the profile, and leaves an ordinary program
 * working. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <linux/filter.h>
#include <seccomp.h>

#include "err.h"
#include "util.h"
#include "runtime/seccomp.h"

static long
anon_kb(void)
{
	cleanup_free char *s = util_read_file("/proc/self/smaps_rollup", NULL, NULL);
	const char *a = s ? strstr(s, "\nAnonymous:") : NULL;

	return a ? strtol(a + strlen("\nAnonymous:"), NULL, 10) : -1;
}

/* A shim that compiles the filter (the node's first start, no cache yet) lives as long as its
 * container: it must not keep libseccomp's rule database (~1 MB of freed heap) resident. */
static void
test_compile_gives_heap_back(void **state)
{
	struct shoal_err err;
	long before, after;

	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	skip(); /* ASan's allocator keeps freed memory in quarantine by design */
#endif
	/* In a child: the tests after this one need a process that has not compiled yet. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		before = anon_kb();
		if (before <= 0 || seccomp_default_prog(NULL, &err) == NULL)
			_exit(2);
		after = anon_kb();
		print_message("anonymous memory: %ld KiB before the compile, %ld after\n", before,
		              after);
		_exit(after - before < 256 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_compile_and_cache(void **state)
{
	char dir[] = "/tmp/shoal-sctest-XXXXXX";
	struct shoal_err err;
	const struct sock_fprog *p, *q;
	size_t len = 0;
	void *bpf;

	(void)state;
	bpf = seccomp_compile_default(&len, &err);
	assert_non_null(bpf);
	assert_true(len > 0);
	assert_int_equal(len % sizeof(struct sock_filter), 0);

	assert_non_null(mkdtemp(dir));
	p = seccomp_default_prog(dir, &err);
	assert_non_null(p);
	assert_int_equal(p->len * sizeof(struct sock_filter), len);
	assert_memory_equal(p->filter, bpf, len);
	/* Built once per process: the same program again, no new compile. */
	q = seccomp_default_prog(dir, &err);
	assert_ptr_equal(p, q);

	/* The cache file holds exactly the program. */
	cleanup_free char *cmd = xasprintf("cmp -s %s/seccomp-default-r2-*.bpf /dev/stdin", dir);
	FILE *f = popen(cmd, "w");
	assert_non_null(f);
	fwrite(bpf, 1, len, f);
	assert_int_equal(pclose(f), 0);
	free(bpf);
	cleanup_free char *rm = xasprintf("rm -rf %s", dir);
	assert_int_equal(system(rm), 0);
}

/* One probe: what a syscall returned under the filter. */
struct probe {
	const char *what;
	long rc;
	int err;
};

#define NPROBES 16

/* errno of a raw syscall, 0 when it succeeded. */
#define TRY(p, name, ...)                                                                          \
	do {                                                                                       \
		errno = 0;                                                                         \
		(p)->what = name;                                                                  \
		(p)->rc = syscall(__VA_ARGS__);                                                    \
		(p)->err = (p)->rc == -1 ? errno : 0;                                              \
		(p)++;                                                                             \
	} while (0)

/* In a child: install the filter, run each probe, write the results down fd. */
static void
child_probes(const struct sock_fprog *prog, int fd)
{
	struct probe res[NPROBES], *p = res;
	struct shoal_err err;
	char params[120] = {0}; /* struct io_uring_params */

	memset(res, 0, sizeof(res));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 || seccomp_install(prog, &err) == -1)
		_exit(2);
	TRY(p, "io_uring_setup", 425, 4, params);
	TRY(p, "socket AF_VSOCK", SYS_socket, AF_VSOCK, SOCK_STREAM, 0);
	/* The kernel reads the family as an int: the high bits must not sneak it past. */
	TRY(p, "socket AF_VSOCK|1<<32", SYS_socket, (1UL << 32) | AF_VSOCK, SOCK_STREAM, 0);
	TRY(p, "socket AF_ALG", SYS_socket, AF_ALG, SOCK_SEQPACKET, 0);
	TRY(p, "personality READ_IMPLIES_EXEC", SYS_personality, READ_IMPLIES_EXEC);
	TRY(p, "unshare", SYS_unshare, CLONE_NEWUSER);
	TRY(p, "clone NEWUSER", SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	TRY(p, "clone3", 435, 0, 0);
	TRY(p, "mount", SYS_mount, "none", "/", "tmpfs", 0, 0);
	TRY(p, "memfd_secret", 447, 0);
	/* Must keep working. */
	TRY(p, "socket AF_INET", SYS_socket, AF_INET, SOCK_DGRAM, 0);
	TRY(p, "personality query", SYS_personality, 0xffffffffUL);
	TRY(p, "getpid", SYS_getpid);
	/* mseal (kernel 6.10, unknown to libseccomp 2.5.4): newer than the profile. */
	TRY(p, "mseal", 462, 0, 0, 0);
	(void)!write(fd, res, sizeof(res));
	_exit(0);
}

static const struct probe *
find(const struct probe *res, const char *what)
{
	for (int i = 0; i < NPROBES && res[i].what; i++)
		if (strcmp(res[i].what, what) == 0)
			return &res[i];
	fail_msg("no probe %s", what);
	return NULL;
}

static void
assert_refused(const struct probe *res, const char *what, int want)
{
	const struct probe *p = find(res, what);

	if (p->err != want)
		fail_msg("%s: got rc %ld errno %d (%s), want errno %d", what, p->rc, p->err,
		         strerror(p->err), want);
}

static void
test_allowlist(void **state)
{
	struct probe res[NPROBES];
	struct shoal_err err;
	const struct sock_fprog *prog;
	int fds[2], status;
	pid_t pid;

	(void)state;
	prog = seccomp_default_prog(NULL, &err);
	assert_non_null(prog);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		close(fds[0]);
		child_probes(prog, fds[1]);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], res, sizeof(res)), sizeof(res));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	assert_refused(res, "io_uring_setup", EPERM);
	assert_refused(res, "socket AF_VSOCK", EPERM);
	assert_refused(res, "socket AF_VSOCK|1<<32", EPERM);
	assert_refused(res, "socket AF_ALG", EPERM);
	assert_refused(res, "personality READ_IMPLIES_EXEC", EPERM);
	assert_refused(res, "unshare", EPERM);
	assert_refused(res, "clone NEWUSER", EPERM);
	assert_refused(res, "clone3", ENOSYS);
	assert_refused(res, "mount", EPERM);
	assert_refused(res, "memfd_secret", EPERM);
	assert_refused(res, "socket AF_INET", 0);
	assert_refused(res, "personality query", 0);
	assert_int_equal(find(res, "getpid")->rc, pid);
	/* Only meaningful while this libseccomp does not know mseal (else it is plain EPERM). */
	if (seccomp_syscall_resolve_name("mseal") == __NR_SCMP_ERROR)
		assert_refused(res, "mseal", ENOSYS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    /* First, while this process has compiled nothing (its child must compile). */
	    cmocka_unit_test(test_compile_gives_heap_back),
	    cmocka_unit_test(test_compile_and_cache),
	    cmocka_unit_test(test_allowlist),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
