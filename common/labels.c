#include "labels.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "err.h"

static bool
key_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-' || c == '/';
}

/* '=' may appear in a value: the key ends at the first one. */
static bool
value_char(char c)
{
	return c > ' ' && c < 0x7f && c != ',';
}

static int
check_span(const char *key, size_t klen, const char *value, size_t vlen, struct shoal_err *err)
{
	if (klen == 0)
		return err_set(err, 0, "label with an empty key");
	if (klen > LABEL_KEY_MAX)
		return err_set(err, 0, "label key \"%.32s...\": longer than %d bytes", key,
		               LABEL_KEY_MAX);
	if (!isalnum((unsigned char)key[0]))
		return err_set(err, 0, "label key \"%.*s\": must start with a letter or digit",
		               (int)klen, key);
	for (size_t i = 0; i < klen; i++)
		if (!key_char(key[i]))
			return err_set(err, 0,
			               "label key \"%.*s\": only letters, digits, '.', '_', '-' "
			               "and '/'",
			               (int)klen, key);
	if (vlen > LABEL_VALUE_MAX)
		return err_set(err, 0, "label %.*s: value longer than %d bytes", (int)klen, key,
		               LABEL_VALUE_MAX);
	for (size_t i = 0; i < vlen; i++)
		if (!value_char(value[i]))
			return err_set(err, 0,
			               "label %.*s: value may hold printable characters but no "
			               "',' or space",
			               (int)klen, key);
	return 0;
}

int
labels_check(const char *key, const char *value, struct shoal_err *err)
{
	if (key == NULL || value == NULL)
		return err_set(err, 0, "label without a key or value");
	/* strnlen: a hostile key of megabytes is refused without being read to its end. */
	return check_span(key, strnlen(key, LABEL_KEY_MAX + 1), value,
	                  strnlen(value, LABEL_VALUE_MAX + 1), err);
}

int
labels_check_count(size_t n, struct shoal_err *err)
{
	if (n > LABELS_MAX)
		return err_set(err, 0, "%zu labels: at most %d", n, LABELS_MAX);
	return 0;
}

int
labels_check_joined(const char *s, struct shoal_err *err)
{
	size_t n = 0;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (const char *p = s;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq == NULL)
			return err_set(err, 0, "label \"%.*s\": expected KEY=VALUE",
			               (int)(len > 32 ? 32 : len), p);
		if (++n > LABELS_MAX)
			return labels_check_count(n, err);
		if (check_span(p, (size_t)(eq - p), eq + 1, len - (size_t)(eq - p) - 1, err) == -1)
			return -1;
		if (end == NULL)
			return 0;
		p = end + 1;
	}
}
