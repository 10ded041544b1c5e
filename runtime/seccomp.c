#include "seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include "err.h"
#include "util.h"

/* Bump when the rules change: the on-disk cache is keyed by it. */
#define PROFILE_REVISION 2

/*
 * An allowlist: Docker's default profile (moby profiles/seccomp/default_linux.go, 2026) for
 * x86_64 and its 32-bit ABIs, with Docker's default capability set (spawn_default_caps), of
 * which only CAP_SYS_CHROOT unlocks a syscall (chroot). Everything else fails with EPERM,
 * except syscalls numbered above every syscall this profile names, which fail with ENOSYS
 * (see prepend_enosys_stub). Deviations from Docker, each stricter:
 *   - io_uring_* stay out (as in Docker's current profile): their own syscall-free I/O path walks
 *     around this filter, and they have been a steady source of kernel bugs.
 *   - memfd_secret stays out: secret memory leaves the kernel's direct map and cannot be swapped
 *     out, and no service we run needs it.
 *   - socketcall (32-bit x86's multiplexer) is not allowed wholesale: libseccomp maps each
 *     allowed socket call onto its socketcall sub-call, so 32-bit programs keep working. Its
 *     SYS_SOCKET sub-call carries the family in memory, out of a filter's reach: 32-bit code
 *     can still open an AF_VSOCK socket that way, as under Docker.
 *   - socket()'s family must have its high 32 bits clear (the kernel reads an int): Docker's
 *     "family > AF_VSOCK" lets 0x100000028 through, which the kernel reads as AF_VSOCK.
 * Names this libseccomp does not know are skipped (they then fall under the ENOSYS stub).
 */
static const char *const allowed[] = {
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    /* Docker allows these on kernels >= 4.8, where seccomp runs after ptrace's changes. */
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    /* x86 only */
    "arch_prctl",
    "modify_ldt",
    /* CAP_SYS_CHROOT, in the default capability set */
    "chroot",
};

/*
 * Named so that the ENOSYS stub covers them as "known and refused" (EPERM): what Docker grants
 * only with capabilities the container lacks, and our deliberate omissions.
 */
static const char *const refused[] = {
    "acct",
    "bpf",
    "clock_settime",
    "clock_settime64",
    "clone3",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "lookup_dcookie",
    "mbind",
    "memfd_secret",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "process_madvise",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "setdomainname",
    "sethostname",
    "setns",
    "settimeofday",
    "socketcall",
    "stime",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "vhangup",
};

/* personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26 and both, and the
 * query. READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE and the rest are refused. */
static const uint64_t personalities[] = {0x0, 0x0008, 0x20000, 0x20008, 0xffffffff};

#define NS_FLAGS                                                                                   \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
	 CLONE_NEWCGROUP)

/* Families are ints: the kernel never has more than 64 (AF_MAX is 46 in 6.x). */
#define SOCKET_FAMILIES 64

static int
allow_name(scmp_filter_ctx ctx, const char *name, struct shoal_err *err)
{
	int nr = seccomp_syscall_resolve_name(name);
	int rc;

	if (nr == __NR_SCMP_ERROR)
		return 0;
	rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	/* -EDOM: a name of another ABI only (libseccomp's pseudo number), absent from ours. */
	if (rc != 0 && rc != -EEXIST && rc != -EDOM)
		return err_set(err, -rc, "seccomp: rule %s", name);
	return 0;
}

static int
build_ctx(scmp_filter_ctx ctx, struct shoal_err *err)
{
	int rc;

	/* Rules apply to the 32-bit ABIs too, or `int 0x80` would walk around them. */
	if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X86)) != 0 && rc != -EEXIST)
		return err_set(err, -rc, "seccomp: add arch x86");
	if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X32)) != 0 && rc != -EEXIST)
		return err_set(err, -rc, "seccomp: add arch x32");
	/* A binary tree over syscall numbers instead of ~350 comparisons in a row (2.5.0+). */
	(void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
		if (allow_name(ctx, allowed[i], err) == -1)
			return -1;
	/* socket: every family but AF_ALG (38) and AF_VSOCK (40), as Docker. Equalities, not
	 * "> AF_VSOCK": libseccomp compares all 64 bits and the kernel only the low 32. */
	rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
	                      SCMP_A0(SCMP_CMP_LT, AF_ALG));
	for (uint64_t f = AF_ALG + 1; rc == 0 && f < SOCKET_FAMILIES; f++)
		if (f != AF_VSOCK)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
			                      SCMP_A0(SCMP_CMP_EQ, f));
	if (rc != 0)
		return err_set(err, -rc, "seccomp: rule socket");
	for (size_t i = 0; i < ARRAY_SIZE(personalities); i++) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
		                      SCMP_A0(SCMP_CMP_EQ, personalities[i]));
		if (rc != 0)
			return err_set(err, -rc, "seccomp: rule personality");
	}
	/* clone without any namespace flag (CAP_SYS_ADMIN is not in the set). */
	rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	                      SCMP_A0(SCMP_CMP_MASKED_EQ, NS_FLAGS, 0));
	if (rc != 0)
		return err_set(err, -rc, "seccomp: rule clone");
	/* clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc use clone. */
	rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (rc != 0 && rc != -EDOM)
		return err_set(err, -rc, "seccomp: rule clone3");
	return 0;
}

/* The highest number any name of the profile has on arch (0 if none resolves). */
static uint32_t
profile_max_nr(uint32_t arch)
{
	const char *const *lists[] = {allowed, refused};
	const size_t lens[] = {ARRAY_SIZE(allowed), ARRAY_SIZE(refused)};
	uint32_t max = 0;

	for (size_t l = 0; l < ARRAY_SIZE(lists); l++)
		for (size_t i = 0; i < lens[l]; i++) {
			int nr = seccomp_syscall_resolve_name_arch(arch, lists[l][i]);
			if (nr >= 0 && (uint32_t)nr > max)
				max = (uint32_t)nr;
		}
	/* Named in rules rather than lists. */
	static const char *const extra[] = {"socket", "personality", "clone"};
	for (size_t i = 0; i < ARRAY_SIZE(extra); i++) {
		int nr = seccomp_syscall_resolve_name_arch(arch, extra[i]);
		if (nr >= 0 && (uint32_t)nr > max)
			max = (uint32_t)nr;
	}
	return max;
}

/*
 * Put a stub before libseccomp's program: a syscall numbered above every syscall the profile
 * names is newer than the profile and gets ENOSYS, not the default EPERM, so libc falls back
 * to the older call (glibc tries fchmodat2, statx, clone3... first and treats only ENOSYS as
 * "not here"). runc does the same ("patchbpf"), which is what Docker users get. x32 (numbers
 * with bit 30 set) keeps libseccomp's verdicts. Takes bpf (malloc'd), returns the new array.
 */
static void *
prepend_enosys_stub(void *bpf, size_t *len)
{
	uint32_t max64 = profile_max_nr(SCMP_ARCH_X86_64);
	uint32_t max32 = profile_max_nr(SCMP_ARCH_X86);
	/* Jumps are relative to the next instruction; body = first instruction of libseccomp's. */
	const struct sock_filter stub[] = {
	    /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
	    /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x40000000, 5, 0),
	    /* 4 */ BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, max64, 3, 4),
	    /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, 3),
	    /* 6 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    /* 7 */ BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, max32, 0, 1),
	    /* 8 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	    /* 9: body */
	};
	char *out = xmalloc(sizeof(stub) + *len);

	memcpy(out, stub, sizeof(stub));
	memcpy(out + sizeof(stub), bpf, *len);
	free(bpf);
	*len += sizeof(stub);
	return out;
}

void *
seccomp_compile_default(size_t *len, struct shoal_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
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
	buf = prepend_enosys_stub(buf, len);
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
		/* libseccomp's rule database (~1 MB) is freed but stays in our heap: a shim that
		 * compiled would hold it for its container's whole life. */
		malloc_trim(0);
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
