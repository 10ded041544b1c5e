#ifndef SHOAL_RUNTIME_IMAGE_INTERNAL_H
#define SHOAL_RUNTIME_IMAGE_INTERNAL_H

/*
 * What the image store's three files share: image.c (the store, its index, reading images
 * back), image_gc.c (garbage collection, rmi) and image_import.c (import of OCI layouts and
 * docker save archives). Not for use outside them: everything else goes through image.h.
 */
#include <stdint.h>

#include "digest.h"
#include "layer.h"

struct shoal_err;
struct image_gc_stats; /* image.h: the internals need no more of it, and image.h is above them */

struct image_store {
	char *root;              /* absolute, canonical */
	int rootfd;              /* O_RDONLY on root: the flock lives on it */
	int locked;              /* image_store_lock depth guard: flock is not recursive */
	struct layer_limits lim; /* max_bytes: of one image's layers together */
};

/* One entry of ROOT/index.json. */
struct entry {
	char *name;
	char *tag;
	char digest[DIGEST_STR_LEN + 1];
	int64_t created_ms;
	uint64_t size;
};

struct index {
	struct entry *e;
	size_t n;
};

/* The store's flock, released when the variable goes out of scope (NULL: not held). */
void image_store_unlockp(struct image_store **s);
#define cleanup_unlock __attribute__((cleanup(image_store_unlockp)))

void image_index_free(struct index *ix);
/* Load ROOT/index.json (empty when absent); the caller holds the store lock. */
int image_index_load(struct image_store *s, struct index *ix, struct shoal_err *err);
/* Write ROOT/index.json atomically (a temporary file renamed over it). */
int image_index_save(struct image_store *s, const struct index *ix, struct shoal_err *err);
struct entry *image_index_find(struct index *ix, const char *name, const char *tag);

/* ROOT/dir, or ROOT/dir/name. Caller frees. */
char *image_store_path(const struct image_store *s, const char *dir, const char *name);
/* Split a reference as the store names it: name, tag (or NULL) and digest (or NULL). */
int image_ref_split(const char *ref, char **name, char **tag, char **digest, struct shoal_err *err);
int image_path_exists(const char *p);
/* A blob of the store, whole, as a string (JSON documents only). */
char *image_read_blob(struct image_store *s, const char *digest, struct shoal_err *err);
/* The directory name (hex) of a layer: its diff_id when known, else its blob digest. Points
 * into one of the two arguments. */
const char *image_layer_key(const struct image_store *s, const char *blob_digest,
                            const char *diff_id);

/* Sweep blobs and layers no image of ix and no container uses (store lock held). */
int image_gc_locked(struct image_store *s, const struct index *ix, struct image_gc_stats *stats,
                    struct shoal_err *err);

#endif
