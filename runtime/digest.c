#include "digest.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "fdio.h"
#include "err.h"
#include "util.h"

int
digest_is_hex(const char *s)
{
	size_t i;

	for (i = 0; i < DIGEST_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[i] == '\0';
}

int
digest_parse(const char *s, char *hex, struct shoal_err *err)
{
	if (s == NULL)
		return err_set(err, 0, "missing digest");
	if (strncmp(s, "sha256:", 7) != 0) {
		const char *colon = strchr(s, ':');
		if (colon != NULL && colon - s < 16)
			return err_set(err, 0,
			               "digest %.60s: unsupported algorithm %.*s (want sha256)", s,
			               (int)(colon - s), s);
		return err_set(err, 0, "invalid digest \"%.80s\"", s);
	}
	if (!digest_is_hex(s + 7))
		return err_set(err, 0,
		               "invalid digest \"%.80s\" (want sha256: and 64 lowercase hex)", s);
	memcpy(hex, s + 7, DIGEST_HEX_LEN + 1);
	return 0;
}

void
digest_buf(const void *buf, size_t len, char *out)
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, buf, len);
	memcpy(out, "sha256:", 7);
	util_hex(h, sizeof(h), out + 7);
}

int
digest_fd(int fd, int dst_fd, char *out, uint64_t *size, struct shoal_err *err)
{
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES];
	cleanup_free uint8_t *buf = xmalloc(1 << 16);
	uint64_t total = 0;

	crypto_hash_sha256_init(&st);
	for (;;) {
		ssize_t r = read(fd, buf, 1 << 16);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			return err_set(err, errno, "read");
		}
		if (r == 0)
			break;
		crypto_hash_sha256_update(&st, buf, (unsigned long long)r);
		if (dst_fd >= 0 && fdio_write_all(dst_fd, buf, (size_t)r) == -1)
			return err_set(err, errno, "write");
		total += (uint64_t)r;
	}
	crypto_hash_sha256_final(&st, h);
	memcpy(out, "sha256:", 7);
	util_hex(h, sizeof(h), out + 7);
	if (size)
		*size = total;
	return 0;
}

const char *
digest_short(const char *digest, char *buf, size_t len)
{
	const char *colon = strchr(digest, ':');

	if (colon == NULL || strlen(colon + 1) <= 12)
		snprintf(buf, len, "%s", digest);
	else
		snprintf(buf, len, "%.*s…", (int)(colon - digest) + 13, digest);
	return buf;
}
