/* libFuzzer target for manifest documents from a registry, as registry_pull reads them: the
 * first byte picks the Content-Type the registry sent (none, OCI manifest or index, Docker v2
 * or manifest list, schema 1, junk), the rest is the document. Its type is decided
 * (registry_manifest_type), then it is parsed as an index or an image manifest (oci.c). Any
 * bytes parse or fail cleanly with a message and everything freed; what parses holds
 * descriptors with a well-formed digest and a size >= 0. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "oci.h"
#include "registry.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const content_types[] = {
    NULL,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "text/html",
};

static void
check_desc(const struct oci_desc *d)
{
	SHOAL_ASSERT(strncmp(d->digest, "sha256:", 7) == 0 && strlen(d->digest) == 71);
	SHOAL_ASSERT(d->size >= 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *ctype, *mt;
	struct shoal_err err = {0};
	char *json;

	if (size == 0)
		return 0;
	ctype = content_types[data[0] % ARRAY_SIZE(content_types)];
	json = xmalloc(size);
	memcpy(json, data + 1, size - 1);
	json[size - 1] = '\0';
	mt = registry_manifest_type(json, ctype, &err);
	if (mt == NULL) {
		SHOAL_ASSERT(err.msg[0] != '\0');
	} else if (oci_media_kind(mt) == OCI_KIND_INDEX) {
		struct oci_desc *ds = NULL;
		size_t n = 0;

		if (oci_parse_index(json, &ds, &n, &err) == 0) {
			for (size_t i = 0; i < n; i++)
				check_desc(&ds[i]);
			oci_descs_free(ds, n);
		} else {
			SHOAL_ASSERT(err.msg[0] != '\0');
		}
	} else if (oci_media_kind(mt) == OCI_KIND_MANIFEST) {
		struct oci_manifest m;

		memset(&m, 0, sizeof(m));
		if (oci_parse_manifest(json, mt, &m, &err) == 0) {
			check_desc(&m.config);
			for (size_t i = 0; i < m.nlayers; i++)
				check_desc(&m.layers[i]);
			oci_manifest_free(&m);
		} else {
			SHOAL_ASSERT(err.msg[0] != '\0');
		}
	}
	free(json);
	return 0;
}
