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
	uint64_t charged; /* what the limits count: bytes + LAYER_ENTRY_COST per entry */
	/* "sha256:<hex>" of the whole decompressed tar stream (the OCI diff_id), hashed as it is
	 * unpacked: one decompression serves both. */
	char diff_id[72];
};

/*
 * Bounds on what one archive may unpack to, so a small download cannot fill the disk (a
 * 204 KB gzip of zeros is 200 MiB). Every entry is charged its declared size (sparse files at
 * their full size) plus LAYER_ENTRY_COST, roughly its tar header and inode: what is charged
 * is about the uncompressed tar, so the ratio is the compression ratio. Checked before an
 * entry is written: nothing past a limit ever reaches the disk.
 */
#define LAYER_ENTRY_COST 512

struct layer_limits {
	uint64_t max_bytes;   /* charged bytes at most; 0: no cap */
	uint64_t max_ratio;   /* charged / archive size at most...; 0: no ratio check */
	uint64_t ratio_floor; /* ...once past this many charged bytes (small layers may compress
	                         well: a layer of a few text files) */
};

/* The defaults of layer_unpack: 8 GiB, ratio 100 past 64 MiB. */
#define LAYER_DEFAULT_MAX_BYTES   (8ULL << 30)
#define LAYER_DEFAULT_MAX_RATIO   100
#define LAYER_DEFAULT_RATIO_FLOOR (64ULL << 20)

/*
 * Unpack archive (tar, optionally gzip/zstd/xz compressed, detected by content) into dir, an
 * existing directory (normally empty), within the default limits. stats may be NULL.
 */
int layer_unpack(const char *archive, const char *dir, unsigned flags, struct layer_stats *stats,
                 struct shoal_err *err);

/* layer_unpack within lim (NULL: the defaults). Past a limit it fails with EFBIG and a message
 * naming the limit; the caller removes dir, as after any failed unpack. */
int layer_unpack_limited(const char *archive, const char *dir, unsigned flags,
                         const struct layer_limits *lim, struct layer_stats *stats,
                         struct shoal_err *err);

/* Bytes of regular files under dir, symlinks not followed. */
int layer_size(const char *dir, uint64_t *bytes, struct shoal_err *err);

/* rm -rf path without following symlinks or crossing mounts; a missing path is fine. */
int layer_remove_tree(const char *path, struct shoal_err *err);

/* The same for name in the directory parent (an fd). */
int layer_remove_at(int parent, const char *name, struct shoal_err *err);

#endif
