#ifndef SHOAL_RUNTIME_CONTAINER_INTERNAL_H
#define SHOAL_RUNTIME_CONTAINER_INTERNAL_H

/*
 * What the container module's three files share: container.c (the spec, create, load and
 * list, kill, stop and remove), container_state.c (state.json: the struct to and from JSON,
 * written atomically) and container_shim.c (starting a container's shim, an exec through a
 * `shoal-shim exec` child, the shim's messages). Not for use outside them: everything else
 * goes through container.h.
 */
#include <stddef.h>

struct shoal_err;

/* Length of a NULL-terminated string array (0 for NULL). */
size_t container_strv_len(char *const *v);

/* Atomic replace without fsync: readers never see a torn file, and a container's state does
 * not need to survive a power loss (its processes would not either); an fsync would cost
 * milliseconds on every start and exit. Mode 0600. */
int container_state_write_atomic(const char *path, const char *data, size_t len,
                                 struct shoal_err *err);

#endif
