#ifndef SHOAL_COMMON_REFERENCE_H
#define SHOAL_COMMON_REFERENCE_H

#include <stddef.h>

struct shoal_err;

/*
 * Image references in Docker's grammar (github.com/distribution/reference):
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path-component [ "/" path-component ]*
 *   domain    := host [ ":" port ]           host: DNS labels, IPv4, or [IPv6]
 *   path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest    := "sha256:" 64 lowercase hex  (the only algorithm the store knows)
 *
 * normalised as Docker normalises: a first component without ".", ":" and other than
 * "localhost" is not a domain, so the domain is "docker.io" ("index.docker.io" is an alias);
 * a single-component name on docker.io gets "library/"; a reference with neither tag nor
 * digest gets ":latest". The familiar form drops "docker.io/" and "library/" again, as
 * `docker images` shows them: the image store keys images by it, so "nginx",
 * "library/nginx" and "docker.io/library/nginx:latest" are one image. Nothing of a reference
 * ever becomes a path without passing this grammar ("..", "/", uppercase, spaces are out).
 */

#define REFERENCE_DEFAULT_DOMAIN "docker.io"
#define REFERENCE_NAME_MAX       255

struct reference {
	char *domain; /* "docker.io", "localhost:5000", "192.168.56.10:5000" */
	char *path;   /* "library/busybox", "shoal/web" */
	char *tag;    /* "latest" when neither tag nor digest was given; NULL with a bare digest */
	char *digest; /* "sha256:<hex>" or NULL */
};

/* Parse and normalise s into r (fields owned by r; free with reference_free). On error
 * *r is empty and err says what is wrong, quoting the reference. */
int reference_parse(const char *s, struct reference *r, struct shoal_err *err);
void reference_free(struct reference *r);

/* "docker.io/library/busybox": domain and path. Caller frees. */
char *reference_name(const struct reference *r);
/* "busybox", "shoal/web", "localhost:5000/shoal/web": Docker's familiar name. Caller frees. */
char *reference_familiar_name(const struct reference *r);
/* The familiar name with ":tag" and/or "@digest". Caller frees. */
char *reference_familiar(const struct reference *r);
/* The full normalised reference ("docker.io/library/busybox:latest"). Caller frees. */
char *reference_string(const struct reference *r);

/* True for a valid tag. */
int reference_tag_ok(const char *tag);

#endif
