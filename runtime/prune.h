#ifndef SHOAL_RUNTIME_PRUNE_H
#define SHOAL_RUNTIME_PRUNE_H

#include <stddef.h>
#include <stdint.h>

struct shoal_err;
struct image_store;

struct prune_stats {
	size_t images; /* images removed from the index */
	size_t blobs;  /* blobs deleted (image_store_gc) */
	size_t layers; /* layer directories deleted */
};

/*
 * Remove the store's unused images: those no container uses (one uses an image when it
 * holds every layer of it, ROOT/containers/<id>/layers) and that were imported or pulled at
 * least older_ms ago (0: any age), then delete what nothing references any more
 * (image_store_gc). A pull that just finished is younger than any grace period, so the
 * container it is for is made first. stats may be NULL.
 */
int prune_images(struct image_store *s, int64_t older_ms, struct prune_stats *stats,
                 struct shoal_err *err);

#endif
