#ifndef SHOAL_RUNTIME_LAYER_H
#define SHOAL_RUNTIME_LAYER_H

#include <stdint.h>

struct shoal_err;

/*
 * Unpacking tar archives into directories, safely, as root.
 *
 * A layer is unpacked once into its own directory, which overlayfs later stacks as a lowerdir:
 * OCI whiteouts become what overlayfs understands (`.wh.NAME` -> char device 0:0 NAME,
 * `DIR/.wh..wh..opq` -> xattr trusted.overlay.opaque=y on DIR); ownership, modes, times and
 * xattrs are kept except trusted.* (overlayfs reads trusted.overlay.*: an image must not forge
 * redirects or whiteouts by xattr). An entry that would land outside the directory (absolute
 * path, `..`, a hardlink to outside, anything through a symlink) or a device node is refused
 * and the whole unpack fails: the caller unpacks into a scratch directory and removes it then.
 *
 * These are plain blocking functions with no global state (no chdir, no umask), so the agent
 * can run them in a worker thread or a child.
 */

enum layer_flags {
	/* A container image layer: apply whiteouts, keep owners and xattrs, allow fifos and
	 * 0:0 char devices (overlay-format whiteouts). Without it the archive is a plain
	 * transport (an OCI layout or docker save tar): files, directories and links only. */
	LAYER_OCI = 1 << 0,
};

struct layer_stats {
	uint64_t entries; /* archive entries written, whiteouts included */
	uint64_t bytes;   /* bytes of regular file data */
};

/*
 * Unpack archive (tar, optionally gzip/zstd/xz compressed, detected by content) into dir, an
 * existing directory (normally empty). stats may be NULL.
 */
int layer_unpack(const char *archive, const char *dir, unsigned flags, struct layer_stats *stats,
                 struct shoal_err *err);

/* Bytes of regular files under dir, symlinks not followed. */
int layer_size(const char *dir, uint64_t *bytes, struct shoal_err *err);

/* rm -rf path without following symlinks or crossing mounts; a missing path is fine. */
int layer_remove_tree(const char *path, struct shoal_err *err);

#endif
