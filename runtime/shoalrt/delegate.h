#ifndef SHOAL_RUNTIME_SHOALRT_DELEGATE_H
#define SHOAL_RUNTIME_SHOALRT_DELEGATE_H

/*
 * The verbs that move images in and out of the store (pull, push, import) need libcurl,
 * libarchive and libcrypto, which load some forty shared libraries: ~30 ms of dynamic loading
 * on every exec on a loaded 2-core host, more than a whole container start. They live in a
 * sibling program, shoalrt-image (dynamically linked), and shoalrt itself is linked
 * statically with what the other verbs need; shoalrt runs shoalrt-image for those three
 * (delegate.c), so `shoalrt pull` works as before. Their texts are here, shared by both.
 */
struct shoalrt_ctx;

#define PULL_SUMMARY   "fetch an image from a registry, only the layers the store lacks"
#define PUSH_SUMMARY   "send an image to a registry, only the blobs it lacks"
#define IMPORT_SUMMARY "import an OCI image layout (dir or tar) or a docker save archive"

#define PULL_USAGE                                                                                 \
	"usage: shoalrt pull [--registry-auth FILE] [--insecure-registry HOST:PORT]...\n"          \
	"                    [--platform OS/ARCH] REF\n\n"                                         \
	"Pull REF (host[:port]/path/name[:tag][@sha256:...]; docker.io, library/ and :latest\n"    \
	"by default, as Docker) from its registry into the store. Only the layers the store\n"     \
	"lacks are fetched, each verified against its digest as it streams; an interrupted\n"      \
	"pull resumes where it stopped, and a failed one leaves the store unchanged.\n\n"          \
	"Options:\n"                                                                               \
	"  --registry-auth FILE        credentials, auth.json as podman and skopeo write it\n"     \
	"                              (default $REGISTRY_AUTH_FILE)\n"                            \
	"  --insecure-registry H:P     speak plain HTTP to registry H:P (repeatable)\n"            \
	"  --platform OS/ARCH          the image of a multi-platform index to take\n"              \
	"                              (default this machine's)\n"                                 \
	"  --progress                  also print \"progress LAYERS_DONE LAYERS BYTES\" lines "    \
	"as\n"                                                                                     \
	"                              it goes and \"result DIGEST BLOBS FETCHED BYTES\" at the\n" \
	"                              end (what the agent reads)\n"

#define PUSH_USAGE                                                                                 \
	"usage: shoalrt push [--registry-auth FILE] [--insecure-registry HOST:PORT]...\n"          \
	"                    IMAGE REF\n\n"                                                        \
	"Push the store's IMAGE (NAME[:TAG]) to the registry as REF\n"                             \
	"(host[:port]/path/name[:tag]). Each blob is asked for first (HEAD) and uploaded only\n"   \
	"when the registry lacks it; the manifest goes last, byte for byte as stored.\n\n"         \
	"Options:\n"                                                                               \
	"  --registry-auth FILE        credentials, auth.json as podman and skopeo write it\n"     \
	"                              (default $REGISTRY_AUTH_FILE)\n"                            \
	"  --insecure-registry H:P     speak plain HTTP to registry H:P (repeatable)\n"

#define IMPORT_USAGE                                                                               \
	"usage: shoalrt import PATH [NAME:TAG]\n\n"                                                \
	"Import the image(s) at PATH: an OCI image layout directory, a tar of one, or a\n"         \
	"`docker save` archive. Every digest is verified; a failed import leaves the store\n"      \
	"unchanged. NAME:TAG names the image; by default the layout's\n"                           \
	"org.opencontainers.image.ref.name annotation or docker's RepoTags name it.\n"

/* Run the same command line with shoalrt-image, the program beside ours: returns only on
 * failure (1). */
int shoalrt_delegate(struct shoalrt_ctx *ctx, int argc, char **argv);

#endif
