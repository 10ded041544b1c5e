#ifndef SHOAL_RUNTIME_SECCOMP_H
#define SHOAL_RUNTIME_SECCOMP_H

#include <stddef.h>

struct shoal_err;
struct sock_fprog;

/*
 * The default seccomp filter: an allowlist modelled on Docker's default profile for Docker's
 * default capabilities (seccomp.c lists where it is stricter). What it does not allow fails
 * with EPERM; a syscall newer than every one the profile names fails with ENOSYS, so libc
 * falls back as on an older kernel. clone3 is ENOSYS too, so libc uses clone, whose namespace
 * flags are refused. Compiling with libseccomp costs ~30 ms, so the BPF program is built once
 * per process and, when cache_dir is given, kept on disk for the next process (keyed by
 * libseccomp version and profile revision): a container start only reads ~10 KiB.
 *
 * Returns a program owned by this module (valid until exit), or NULL.
 */
const struct sock_fprog *seccomp_default_prog(const char *cache_dir, struct shoal_err *err);

/* Build the filter afresh into a malloc'd BPF array (*len bytes). Caller frees. */
void *seccomp_compile_default(size_t *len, struct shoal_err *err);

/* Install prog in the calling thread: needs no_new_privs or CAP_SYS_ADMIN. */
int seccomp_install(const struct sock_fprog *prog, struct shoal_err *err);

#endif
