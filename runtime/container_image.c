/*
 * container_create_from_image (declared in container.h) lives apart from container.c so that
 * programs that only run containers (shoal-shim) do not link the image store and, through it,
 * libarchive: the shim is linked statically, and every library it loads would cost each start
 * (a dynamic shim spent ~1.7 ms in the loader; see bench/runtime.sh).
 */
#include "container.h"

#include "err.h"
#include "image.h"
#include "trace.h"

struct container *
container_create_from_image(const char *root, struct container_spec *spec, const char *ref,
                            char **cmd, char **env, struct shoal_err *err)
{
	struct image_store *st = image_store_open(root, err);
	struct container *c = NULL;
	struct image *img;

	if (st == NULL)
		return NULL;
	/* From image_get until the layers file exists, an rmi (or its gc) would find the layers
	 * unreferenced and delete them under the new container: hold the store's lock. */
	if (image_store_lock(st, err) == -1)
		goto out;
	img = image_get(st, ref, err);
	if (img == NULL)
		goto out;
	container_spec_apply_image(spec, img, cmd, env);
	image_free(img);
	trace_mark("image-lookup");
	c = container_create(root, spec, err);
	trace_mark("create-state");
out:
	image_store_unlock(st);
	image_store_close(st);
	if (c == NULL)
		container_spec_clear(spec);
	return c;
}
