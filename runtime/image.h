#ifndef SHOAL_RUNTIME_IMAGE_H
#define SHOAL_RUNTIME_IMAGE_H

#include <stddef.h>
#include <stdint.h>

struct shoal_err;

/*
 * The image store, shared by the agent and shoalrt, under ROOT (--root, else $SHOAL_ROOT,
 * else /var/lib/shoal):
 *   ROOT/blobs/sha256/<hex>      every blob (manifest, config, compressed layer) by digest
 *   ROOT/layers/<hex>/           one unpacked layer per diff_id (the config's rootfs.diff_ids:
 *                                the uncompressed tar's digest), read-only by contract: one
 *                                layer in gzip, zstd and plain is unpacked once. The diff_id is
 *                                checked as the layer unpacks (a mismatch refuses the import).
 *                                A store from before keyed them by the compressed blob's digest:
 *                                image_get resolves such a directory while none exists by
 *                                diff_id; gc drops it once one does and no container lists it.
 *   ROOT/index.json              name:tag -> manifest digest (written atomically)
 *   ROOT/containers/<id>/layers  one layer hex digest per line, for each container that uses
 *                                them: rmi keeps those layers
 * Imports unpack into ROOT/tmp/ and rename into place, so a failed import leaves the store as
 * it was. A layout may leave out a layer blob whose diff_id the store has
 * unpacked (registry_pull skips fetching it).
 *
 * Unpacking is bounded (layer.h, struct layer_limits): an image's layers together unpack to
 * at most $SHOAL_IMAGE_MAX_SIZE (default 8Gi), and a layer past 64 MiB unpacked may not
 * expand more than $SHOAL_LAYER_MAX_RATIO times its compressed size (default 100; 0: no
 * check). Both are read by image_store_open, so the agent and shoalrt honour them alike.
 */

struct image_store;

/* What a container needs from its image. Lists are NULL-terminated. */
struct image {
	char *name;      /* "shoal/web" */
	char *tag;       /* "1" */
	char digest[72]; /* "sha256:<hex>" of the manifest */
	size_t nlayers;
	char **layer_dirs;    /* absolute paths of the unpacked layers, base layer first */
	char **layer_digests; /* hex digests of the same layers, same order */
	char **entrypoint;    /* from the image config; may be NULL */
	char **cmd;           /* may be NULL */
	char **env;           /* KEY=VALUE; may be NULL */
	char *workdir;        /* may be NULL */
	char *user;           /* may be NULL */
	int64_t created_ms;   /* import time */
	uint64_t size;        /* bytes of the unpacked layers */
};

/* Open (creating if needed) the store at root. A handle holds the lock state of
 * image_store_lock: use one handle per thread; handles in any threads or processes exclude each
 * other through the lock. */
struct image_store *image_store_open(const char *root, struct shoal_err *err);
void image_store_close(struct image_store *s);

/* Override the unpacking limits read from the environment (0: no cap, no ratio check). */
void image_store_set_limits(struct image_store *s, uint64_t max_image_bytes, uint64_t max_ratio);
const char *image_store_root(const struct image_store *s);

/* Resolve "name:tag" (tag defaults to "latest"). Caller frees with image_free. */
struct image *image_get(struct image_store *s, const char *ref, struct shoal_err *err);
void image_free(struct image *img);

/*
 * Import an OCI image layout (a directory or a tar of one) or a `docker save` archive. ref
 * ("name:tag") names the image; NULL takes the names the archive gives (the layout's
 * org.opencontainers.image.ref.name annotation, docker's RepoTags). Every blob's digest is
 * verified; layers new to the store are unpacked under ROOT/tmp/ and renamed into place, and
 * the index is rewritten last, so on failure the store is left exactly as it was. Slow (it
 * unpacks layers): call it off any event loop. On success *refs (if non-NULL) receives the
 * imported "name:tag" references, NULL-terminated; free with image_refs_free.
 */
int image_import(struct image_store *s, const char *path, const char *ref, char ***refs,
                 struct shoal_err *err);
void image_refs_free(char **refs);

/*
 * image_import for an OCI layout directory under ROOT/tmp whose blobs the caller has already
 * verified against their descriptors' digests and sizes, and fsynced (registry_pull): they are
 * moved into the store rather than copied and hashed again. Everything else (manifest and
 * config checks, unpacking, the commit, leaving the store unchanged on failure) is
 * image_import's.
 */
int image_import_verified(struct image_store *s, const char *layout, const char *ref,
                          struct shoal_err *err);

/* Every image, sorted by name then tag. Free with image_list_free. */
int image_list(struct image_store *s, struct image ***imgs, size_t *n, struct shoal_err *err);
void image_list_free(struct image **imgs, size_t n);

struct image_gc_stats {
	size_t blobs;  /* blobs deleted */
	size_t layers; /* layer directories deleted */
};

/* Remove "name:tag" from the index, then collect garbage (image_store_gc). stats may be NULL. */
int image_remove(struct image_store *s, const char *ref, struct image_gc_stats *stats,
                 struct shoal_err *err);

/*
 * Delete every blob and layer directory that no image in the index and no container
 * (ROOT/containers/<id>/layers) references. The container side calls it after removing a
 * container. stats may be NULL.
 */
int image_store_gc(struct image_store *s, struct image_gc_stats *stats, struct shoal_err *err);

/*
 * The store's lock (flock on ROOT), held by import's commit, rmi and gc. A container creator
 * holds it while writing ROOT/containers/<id>/layers, so rmi cannot delete a layer between
 * image_get() and that write.
 */
int image_store_lock(struct image_store *s, struct shoal_err *err);
void image_store_unlock(struct image_store *s);

#endif
