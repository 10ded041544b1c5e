#ifndef SHOAL_RUNTIME_REGISTRY_H
#define SHOAL_RUNTIME_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct shoal_err;
struct image_store;
struct oci_manifest;

/*
 * A client of the OCI distribution spec (Docker Registry HTTP API v2) over HTTP and HTTPS
 * (libcurl): pull an image into the store, push one from it.
 *
 * Pull: the manifest is asked for with every type we read in Accept (OCI manifest and index,
 * Docker schema 2 and manifest list; a registry converts to schema 1 otherwise, which is
 * refused); an index picks the node's platform. The config is fetched first: a layer the
 * store has unpacked by its diff_id (in any compression) is not fetched. Only blobs the store
 * lacks are fetched, each
 * streamed to ROOT/tmp/partial/<hex> while it is hashed, and refused unless its digest and
 * size match; an interrupted one resumes with a Range request from what is on disk (the
 * whole is verified at the end). The fetched blobs and links to those the store has make an
 * OCI layout under ROOT/tmp/, which image_import() verifies, unpacks and commits: a failed
 * pull leaves the store as it was.
 *
 * Auth: anonymous, Basic, and the Bearer token flow from the WWW-Authenticate challenge, with
 * credentials from auth.json (regauth.h). No message carries a credential or a token.
 */

struct registry_opts {
	const char *auth_file;       /* auth.json; NULL: none */
	const char *const *insecure; /* HOST:PORT spoken to over plain HTTP; NULL-terminated */
	const char *platform;        /* "linux/amd64"; NULL: this machine's */
	/* Called on the pulling thread as a pull goes (NULL: not called): layers the store has
	 * or has fetched so far of the image's layers, and body bytes fetched. Once when the
	 * manifest is read, after each layer, and at most every 200 ms while bytes flow. */
	void (*progress)(void *arg, size_t layers_done, size_t layers, uint64_t bytes);
	void *progress_arg;
};

struct registry_stats {
	size_t blobs;         /* layers and config the image has */
	size_t blobs_fetched; /* fetched (pull) or uploaded (push) */
	uint64_t bytes;       /* body bytes fetched or uploaded */
	uint64_t resumed;     /* pull: bytes an interrupted pull had fetched, not asked again */
	char digest[80];      /* the manifest's digest */
};

/* This machine's platform as image indexes spell it ("linux/amd64"). */
const char *registry_platform(void);

/*
 * Pull ref into the store. On success *stored (if non-NULL) receives the reference the store
 * holds it under (familiar name and tag; caller frees). stats may be NULL.
 */
int registry_pull(struct image_store *s, const char *ref, const struct registry_opts *o,
                  struct registry_stats *stats, char **stored, struct shoal_err *err);

/*
 * Push the store's image (a reference the store answers to) as ref: each blob is checked
 * with HEAD and uploaded only when missing (POST then a monolithic PUT), the manifest last.
 */
int registry_push(struct image_store *s, const char *image, const char *ref,
                  const struct registry_opts *o, struct registry_stats *stats,
                  struct shoal_err *err);

/*
 * The media type of a manifest document: its "mediaType" field, else the Content-Type the
 * registry sent (umoci writes none in the document), else "schemaVersion": 1 is schema 1.
 * Returns a static string or the given content type; errors on schema 1 and unknown types.
 */
const char *registry_manifest_type(const char *json, const char *content_type,
                                   struct shoal_err *err);

/*
 * Is url on the registry at base ("http://host:port", scheme, host and port exactly)?
 * Upload locations come from the registry's answers: one naming another origin does not get
 * our Authorization header (only the token request sends credentials elsewhere, to the
 * realm the challenge names, and never over plain HTTP unless the registry is insecure).
 */
int registry_same_origin(const char *base, const char *url);

#endif
