#ifndef SHOAL_RUNTIME_DIGEST_H
#define SHOAL_RUNTIME_DIGEST_H

#include <stddef.h>
#include <stdint.h>

struct shoal_err;

/*
 * Content digests as OCI spells them: "sha256:<64 lowercase hex>". Only SHA-256 is accepted:
 * the hex part names files in the store, so it is validated before it ever touches a path.
 */
#define DIGEST_HEX_LEN 64
#define DIGEST_STR_LEN (7 + DIGEST_HEX_LEN) /* "sha256:" + hex */

/* Validate s; on success copy its hex part into hex (DIGEST_HEX_LEN + 1 bytes). */
int digest_parse(const char *s, char *hex, struct shoal_err *err);

/* True when s is exactly 64 lowercase hex characters. */
int digest_is_hex(const char *s);

/* Digest of a buffer into out ("sha256:<hex>", DIGEST_STR_LEN + 1 bytes). */
void digest_buf(const void *buf, size_t len, char *out);

/*
 * Hash the file open at fd from its current offset to EOF; when dst_fd >= 0 also copy every
 * byte there (so what is stored is exactly what was hashed). Returns the byte count in *size.
 */
int digest_fd(int fd, int dst_fd, char *out, uint64_t *size, struct shoal_err *err);

/* "sha256:0123456789ab…" for messages: the algorithm, 12 hex, an ellipsis. Returns buf. */
const char *digest_short(const char *digest, char *buf, size_t len);

#endif
