#include "etcfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

/* A growing string (the files are a few hundred bytes). */
struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (b->len + (size_t)n + 1 > b->cap) {
		b->cap = (b->len + (size_t)n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static char *
sb_take(struct sbuf *b)
{
	if (b->s == NULL)
		return xstrdup("");
	return b->s;
}

char *
etcfiles_hosts(const char *ip, const char *hostname)
{
	struct sbuf b = {0};

	/* Docker's lines, so tools that grep for them find what they expect. */
	sb_printf(&b, "127.0.0.1\tlocalhost\n");
	sb_printf(&b, "::1\tlocalhost ip6-localhost ip6-loopback\n");
	sb_printf(&b, "fe00::0\tip6-localnet\n");
	sb_printf(&b, "ff00::0\tip6-mcastprefix\n");
	sb_printf(&b, "ff02::1\tip6-allnodes\n");
	sb_printf(&b, "ff02::2\tip6-allrouters\n");
	if (ip && *ip && hostname && *hostname)
		sb_printf(&b, "%s\t%s\n", ip, hostname);
	return sb_take(&b);
}

/* Is this nameserver address on loopback (127.0.0.0/8 or ::1)? */
static bool
loopback_server(const char *addr, size_t len)
{
	return (len >= 4 && strncmp(addr, "127.", 4) == 0) ||
	       (len == 3 && strncmp(addr, "::1", 3) == 0);
}

char *
etcfiles_resolv(const char *host, char *const *nameservers, char *const *search,
                char *const *options, bool keep_loopback)
{
	struct sbuf b = {0}, host_search = {0};
	const char *p = host;

	for (size_t i = 0; nameservers && nameservers[i]; i++)
		sb_printf(&b, "nameserver %s\n", nameservers[i]);
	/* The host's lines we keep: nameserver (unless replaced, and not loopback), search and
	 * domain (unless replaced), options (unless replaced). Comments and the rest go. */
	while (p && *p) {
		size_t len = strcspn(p, "\n");
		const char *line = p, *end = p + len;
		const char *w = line;
		size_t wl;

		p = *end ? end + 1 : end;
		while (w < end && (*w == ' ' || *w == '\t'))
			w++;
		wl = strcspn(w, " \t\n");
		if (w + wl > end)
			wl = (size_t)(end - w);
		const char *arg = w + wl;
		while (arg < end && (*arg == ' ' || *arg == '\t'))
			arg++;
		size_t al = (size_t)(end - arg);
		while (al > 0 && (arg[al - 1] == ' ' || arg[al - 1] == '\t' || arg[al - 1] == '\r'))
			al--;
		if (al == 0)
			continue;
		if (wl == 10 && strncmp(w, "nameserver", 10) == 0) {
			if (nameservers)
				continue;
			if (!keep_loopback && loopback_server(arg, strcspn(arg, " \t%")))
				continue;
		} else if ((wl == 6 && strncmp(w, "search", 6) == 0) ||
		           (wl == 6 && strncmp(w, "domain", 6) == 0)) {
			/* Merged into our search line below (the last search line wins). */
			if (search) {
				sb_printf(&host_search, " %.*s", (int)al, arg);
				continue;
			}
		} else if (wl == 7 && strncmp(w, "options", 7) == 0) {
			if (options)
				continue;
		} else {
			continue;
		}
		sb_printf(&b, "%.*s %.*s\n", (int)wl, w, (int)al, arg);
	}
	if (search && (search[0] || host_search.len)) {
		sb_printf(&b, "search");
		for (size_t i = 0; search[i]; i++)
			sb_printf(&b, " %s", search[i]);
		sb_printf(&b, "%s\n", host_search.s ? host_search.s : "");
	}
	free(host_search.s);
	if (options && options[0]) {
		sb_printf(&b, "options");
		for (size_t i = 0; options[i]; i++)
			sb_printf(&b, " %s", options[i]);
		sb_printf(&b, "\n");
	}
	return sb_take(&b);
}

static int
write_file(const char *dir, const char *name, const char *text, struct shoal_err *err)
{
	cleanup_free char *path = xasprintf("%s/%s", dir, name);
	cleanup_close int fd =
	    open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	size_t len = strlen(text), off = 0;

	if (fd == -1)
		return err_set(err, errno, "create %s", path);
	/* No fsync: the files are made again with the container, and a start must stay cheap. */
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return err_set(err, errno, "write %s", path);
		off += (size_t)n;
	}
	return 0;
}

int
etcfiles_write(const char *dir, const char *hosts, const char *hostname, const char *resolv,
               struct shoal_err *err)
{
	cleanup_free char *hn = xasprintf("%s\n", hostname ? hostname : "");

	if (write_file(dir, ETCFILES_HOSTS, hosts, err) == -1 ||
	    write_file(dir, ETCFILES_HOSTNAME, hn, err) == -1 ||
	    write_file(dir, ETCFILES_RESOLV, resolv, err) == -1)
		return -1;
	return 0;
}
