#include "seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include "err.h"
#include "util.h"

/* Bump when the rule list changes: the on-disk cache is keyed by it. */
#define PROFILE_REVISION 1

/* Syscalls Docker's default profile does not allow (with the default capability set). ptrace
 * stays allowed as Docker allows it on kernels >= 4.8. Names unknown to this libseccomp or
 * architecture are skipped. */
static const char *const blocked[] = {
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "pidfd_getfd",
    "fanotify_init",
    "syslog",
    "vhangup",
};

#define NS_FLAGS                                                                                   \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
	 CLONE_NEWCGROUP)

static int
build_ctx(scmp_filter_ctx ctx, struct shoal_err *err)
{
	int rc;

	/* Rules apply to the 32-bit ABIs too, or `int 0x80` would walk around them. */
	if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X86)) != 0 && rc != -EEXIST)
		return err_set(err, -rc, "seccomp: add arch x86");
	if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X32)) != 0 && rc != -EEXIST)
		return err_set(err, -rc, "seccomp: add arch x32");
	for (size_t i = 0; i < ARRAY_SIZE(blocked); i++) {
		int nr = seccomp_syscall_resolve_name(blocked[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
		if (rc != 0 && rc != -EEXIST && rc != -EDOM)
			return err_set(err, -rc, "seccomp: rule %s", blocked[i]);
	}
	/* clone with any namespace flag: EPERM, as without CAP_SYS_ADMIN in Docker's profile.
	 * One rule per flag: rules on one syscall are OR'ed, and "any bit set" needs that. */
	for (int bit = 0; bit < 64; bit++) {
		uint64_t f = 1ULL << bit;
		if (!(NS_FLAGS & f))
			continue;
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
		                      SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
		if (rc != 0)
			return err_set(err, -rc, "seccomp: rule clone");
	}
	/* clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc use clone. */
	rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (rc != 0 && rc != -EDOM)
		return err_set(err, -rc, "seccomp: rule clone3");
	return 0;
}

void *
seccomp_compile_default(size_t *len, struct shoal_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	cleanup_close int fd = -1;
	struct stat st;
	void *buf = NULL;
	int rc;

	if (ctx == NULL) {
		err_set(err, ENOMEM, "seccomp_init");
		return NULL;
	}
	if (build_ctx(ctx, err) == -1)
		goto out;
	/* libseccomp 2.5 exports only to an fd: use a memfd, then read the program back. */
	fd = memfd_create("shoal-seccomp", MFD_CLOEXEC);
	if (fd == -1) {
		err_set(err, errno, "seccomp: memfd_create");
		goto out;
	}
	if ((rc = seccomp_export_bpf(ctx, fd)) != 0) {
		err_set(err, -rc, "seccomp: export bpf");
		goto out;
	}
	if (fstat(fd, &st) == -1) {
		err_set(err, errno, "seccomp: fstat");
		goto out;
	}
	buf = xmalloc((size_t)st.st_size);
	if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		err_set(err, errno, "seccomp: read back bpf");
		free(buf);
		buf = NULL;
		goto out;
	}
	*len = (size_t)st.st_size;
out:
	seccomp_release(ctx);
	return buf;
}

static struct sock_fprog cached_prog;

/* The cache file's name carries everything the program depends on. */
static char *
cache_path(const char *dir)
{
	const struct scmp_version *v = seccomp_version();

	return xasprintf("%s/seccomp-default-r%d-%u.%u.%u.bpf", dir, PROFILE_REVISION, v->major,
	                 v->minor, v->micro);
}

const struct sock_fprog *
seccomp_default_prog(const char *cache_dir, struct shoal_err *err)
{
	cleanup_free char *path = NULL;
	void *buf = NULL;
	size_t len = 0;

	if (cached_prog.filter != NULL)
		return &cached_prog;
	if (cache_dir != NULL) {
		path = cache_path(cache_dir);
		buf = util_read_file(path, &len, NULL);
		/* A torn or foreign file would not be a whole number of instructions. */
		if (buf != NULL && (len == 0 || len % sizeof(struct sock_filter) != 0)) {
			free(buf);
			buf = NULL;
		}
	}
	if (buf == NULL) {
		buf = seccomp_compile_default(&len, err);
		if (buf == NULL)
			return NULL;
		/* Best effort: a read-only or missing cache dir only costs the next start time. */
		if (path != NULL) {
			struct shoal_err ignored;
			if (util_mkdir_p(cache_dir, 0700, &ignored) == 0)
				(void)util_write_file_atomic(path, buf, len, 0600, &ignored);
		}
	}
	cached_prog.len = (unsigned short)(len / sizeof(struct sock_filter));
	cached_prog.filter = buf;
	return &cached_prog;
}

int
seccomp_install(const struct sock_fprog *prog, struct shoal_err *err)
{
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0) == -1)
		return err_set(err, errno, "load seccomp filter");
	return 0;
}
