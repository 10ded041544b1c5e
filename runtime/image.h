#ifndef SHOAL_RUNTIME_IMAGE_H
#define SHOAL_RUNTIME_IMAGE_H

#include <stddef.h>
#include <stdint.h>

struct shoal_err;

/*
 * The image store, shared by the agent and shoalrt, under ROOT (--root, else $SHOAL_ROOT,
 * else /var/lib/shoal):
 *   ROOT/blobs/sha256/<hex>      every blob (manifest, config, compressed layer) by digest
 *   ROOT/layers/<hex>/           one unpacked layer per layer blob digest, read-only by contract
 *   ROOT/index.json              name:tag -> manifest digest (written atomically)
 *   ROOT/containers/<id>/layers  one layer hex digest per line, for each container that uses
 *                                them: rmi keeps those layers
 * Imports unpack into ROOT/tmp/ and rename into place, so a failed import leaves the store as
 * it was.
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

/* Open (creating if needed) the store at root. */
struct image_store *image_store_open(const char *root, struct shoal_err *err);
void image_store_close(struct image_store *s);
const char *image_store_root(const struct image_store *s);

/* Resolve "name:tag" (tag defaults to "latest"). Caller frees with image_free. */
struct image *image_get(struct image_store *s, const char *ref, struct shoal_err *err);
void image_free(struct image *img);

#endif
