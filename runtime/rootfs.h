#ifndef SHOAL_RUNTIME_ROOTFS_H
#define SHOAL_RUNTIME_ROOTFS_H

#include <stddef.h>

struct shoal_err;

/*
 * A container's root filesystem: an overlay of the image's layers (read-only lower dirs,
 * never written) with an upper and work dir per container in its state directory. Everything
 * here runs in the container's child after it entered its own mount namespace, so the mounts
 * never appear on the host and vanish with the namespace: removal has no mount to undo.
 */

/* Create the per-container upper, work and mount-point dirs under state_dir. */
int rootfs_prepare(const char *state_dir, struct shoal_err *err);

/* Mount the overlay on target. layers are in image order (base first); overlayfs wants the
 * nearest parent first, so they are listed in reverse. May chdir (long option strings). */
int rootfs_mount_overlay(char *const *layers, size_t nlayers, const char *upper, const char *work,
                         const char *target, struct shoal_err *err);

/* Inside target: fresh /proc with masked and read-only paths, a minimal /dev (null zero full
 * random urandom tty bound from the host, devpts, shm), read-only /sys with /sys/firmware
 * masked. The rootfs and /dev are nodev, so a node made with CAP_MKNOD opens nothing. Every
 * mount target is resolved inside target (openat2 RESOLVE_IN_ROOT, mounted through its fd),
 * never through a symlink to the host; /proc, /dev and /sys are made plain directories (in
 * the container's upper dir) when the image has something else there. */
int rootfs_setup_mounts(const char *target, struct shoal_err *err);

/* Bind state_dir's hosts, hostname and resolv.conf (runtime/etcfiles.h) over /etc/... of
 * target, read-write, nosuid, nodev, noexec. /etc is made (in the upper dir) when the image has
 * none, and a file the image has there that is not a regular file (a symlink to
 * /run/systemd/resolve/..., say) is replaced by one, as the bind needs a file to cover. A
 * missing source file is skipped (a container made before these files existed). */
int rootfs_bind_etc_files(const char *target, const char *state_dir, struct shoal_err *err);

/* Make target the root (pivot_root) and detach the old one. */
int rootfs_pivot(const char *target, struct shoal_err *err);

#endif
