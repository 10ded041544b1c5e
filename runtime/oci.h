#ifndef SHOAL_RUNTIME_OCI_H
#define SHOAL_RUNTIME_OCI_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct shoal_err;

/*
 * The JSON documents of OCI image layouts and `docker save` archives, parsed into plain
 * structs. No file access here: the importer (image.c) verifies each blob's digest before it
 * hands the text to these parsers, and the parsers are what a fuzzer exercises.
 */

#define OCI_MT_INDEX      "application/vnd.oci.image.index.v1+json"
#define OCI_MT_MANIFEST   "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_CONFIG     "application/vnd.oci.image.config.v1+json"
#define OCI_MT_LAYER      "application/vnd.oci.image.layer.v1.tar"
#define OCI_MT_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_ANN_REF_NAME  "org.opencontainers.image.ref.name"

enum oci_kind {
	OCI_KIND_OTHER = 0,
	OCI_KIND_INDEX,    /* OCI image index or Docker manifest list */
	OCI_KIND_MANIFEST, /* OCI or Docker schema2 image manifest */
};

struct oci_desc {
	char *media_type;
	char digest[DIGEST_STR_LEN + 1];
	int64_t size;
	char *ref_name; /* index entries: the image's reference annotation; may be NULL */
	char *platform; /* index entries: "os/architecture"; may be NULL */
};

struct oci_manifest {
	struct oci_desc config;
	size_t nlayers;
	struct oci_desc *layers;
};

struct oci_config {
	char **entrypoint; /* NULL-terminated lists; each may be NULL */
	char **cmd;
	char **env;
	char *workdir;
	char *user;
	size_t ndiff_ids;
	char **diff_ids; /* rootfs.diff_ids, "sha256:<hex>" of each uncompressed layer */
};

/* One image of a `docker save` manifest.json. Paths are relative to the archive's top. */
struct oci_docker_image {
	char *config;
	char **repo_tags; /* NULL-terminated; may be empty */
	size_t nlayers;
	char **layers;
};

enum oci_kind oci_media_kind(const char *media_type);

/* True for the layer media types we can unpack (tar, gzip, zstd; OCI and Docker names). */
int oci_layer_type_ok(const char *media_type);

/* An image index (or index.json of a layout): its manifests' descriptors. */
int oci_parse_index(const char *json, struct oci_desc **descs, size_t *n, struct shoal_err *err);
/* An image manifest: config and layer descriptors, media types checked (every problem
 * reported, not just the first). media_type is the referring descriptor's, may be NULL. */
int oci_parse_manifest(const char *json, const char *media_type, struct oci_manifest *m,
                       struct shoal_err *err);
int oci_parse_config(const char *json, struct oci_config *c, struct shoal_err *err);
/* `docker save`'s manifest.json. */
int oci_parse_docker_manifest(const char *json, struct oci_docker_image **imgs, size_t *n,
                              struct shoal_err *err);
/* `docker save`'s legacy repositories file: {"name":{"tag":"id"}} -> "name:tag" list. */
char **oci_parse_docker_repositories(const char *json, struct shoal_err *err);

/* The OCI manifest text for a config and its layers (for archives that carry none). */
char *oci_build_manifest(const struct oci_desc *config, const struct oci_desc *layers, size_t n);

/* Split "name[:tag]" (tag defaults to "latest"; a registry port is not a tag). Caller frees. */
int oci_parse_ref(const char *ref, char **name, char **tag, struct shoal_err *err);

void oci_desc_free(struct oci_desc *d);
void oci_descs_free(struct oci_desc *d, size_t n);
void oci_manifest_free(struct oci_manifest *m);
void oci_config_free(struct oci_config *c);
void oci_docker_images_free(struct oci_docker_image *imgs, size_t n);
void oci_strv_free(char **v);

#endif
