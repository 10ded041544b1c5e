#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
err_set(struct shoal_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (code != 0 && n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(code));
	return -1;
}

int
err_prefix(struct shoal_err *err, const char *fmt, ...)
{
	char old[sizeof(err->msg)];
	va_list ap;
	int n;

	if (err == NULL)
		return -1;
	memcpy(old, err->msg, sizeof(old));
	va_start(ap, fmt);
	n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	/* Truncation is the intent (the message is a fixed buffer): copy by hand so the
	 * compiler's format-truncation check has nothing to object to. */
	for (const char *src = ": "; n >= 0 && (size_t)n + 1 < sizeof(err->msg) && *src; src++)
		err->msg[n++] = *src;
	for (const char *src = old; n >= 0 && (size_t)n + 1 < sizeof(err->msg) && *src; src++)
		err->msg[n++] = *src;
	if (n >= 0 && (size_t)n < sizeof(err->msg))
		err->msg[n] = '\0';
	return -1;
}

void
err_clear(struct shoal_err *err)
{
	if (err == NULL)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}
