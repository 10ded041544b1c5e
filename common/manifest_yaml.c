#include "manifest_yaml.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "err.h"
#include "manifest_internal.h"
#include "util.h"

/* ------------------------------------------------------------- YAML tree */

void
manifest_yaml_node_free(struct ynode *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->n; i++)
		manifest_yaml_node_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

static struct ynode *
ynode_new(enum ykind kind, yaml_mark_t mark)
{
	struct ynode *n = xcalloc(1, sizeof(*n));
	n->kind = kind;
	n->mark = mark;
	return n;
}

static void
builder_attach(struct builder *b, struct ynode *n)
{
	struct ynode *parent;

	if (b->depth == 0) {
		manifest_yaml_node_free(b->root);
		b->root = n;
		return;
	}
	parent = b->stack[b->depth - 1];
	if (parent->n == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 8;
		parent->kids = xrealloc(parent->kids, parent->cap * sizeof(*parent->kids));
	}
	parent->kids[parent->n++] = n;
}

/* ------------------------------------------------------------ validation */

void
manifest_yaml_error(struct vctx *c, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = manifest_xvasprintf(fmt, ap);
	va_end(ap);
	c->pending = xrealloc(c->pending, (c->nerr + 1) * sizeof(*c->pending));
	c->pending[c->nerr] =
	    (struct pending){m.line + 1, m.column + 1, c->nerr,
	                     xasprintf("%s:%zu:%zu: %s", c->file, m.line + 1, m.column + 1, msg)};
	c->nerr++;
	free(msg);
}

static int
pending_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->column != y->column)
		return x->column < y->column ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Hand the errors to the caller sorted by position: some are found while
 * reading (aliases), others after a document or after the file (duplicates),
 * and a user reads a file top to bottom.
 */
void
manifest_yaml_flush(struct vctx *c)
{
	if (c->nerr == 0)
		return;
	qsort(c->pending, c->nerr, sizeof(*c->pending), pending_cmp);
	for (size_t i = 0; i < c->nerr; i++) {
		manifest_errs_add(c->errs, c->pending[i].text);
		free(c->pending[i].text);
	}
	free(c->pending);
	c->pending = NULL;
}

/* What the user wrote, as "got ..." reads it. */
const char *
manifest_yaml_describe(const struct ynode *n, char *buf, size_t size)
{
	switch (n->kind) {
	case Y_MAP:
		return "a mapping";
	case Y_SEQ:
		return "a sequence";
	case Y_BAD:
		return "an alias";
	case Y_SCALAR:
		break;
	}
	if (n->null)
		return "null";
	return manifest_quote(n->text, n->len, buf, size);
}

/* Keys are compared to our names byte for byte; a key holding a NUL never matches. */
bool
manifest_yaml_scalar_is(const struct ynode *n, const char *s)
{
	return n->kind == Y_SCALAR && strlen(s) == n->len && memcmp(n->text, s, n->len) == 0;
}

/* A string value: any non-null scalar (numbers and booleans are their text, as in Compose). */
bool
manifest_yaml_get_str(struct vctx *c, const char *path, const struct ynode *v, const char **out)
{
	manifest_qbuf q;

	if (v->kind != Y_SCALAR || v->null) {
		manifest_yaml_error(c, v->mark, "%s: expected a string, got %s", path,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		return false;
	}
	if (strlen(v->text) != v->len) {
		manifest_yaml_error(c, v->mark, "%s: a string must not contain a NUL character",
		                    path);
		return false;
	}
	*out = v->text;
	return true;
}

bool
manifest_yaml_get_int(struct vctx *c, const char *path, const struct ynode *v, long long min,
                      long long max, long long *out)
{
	manifest_qbuf q;
	const char *s;
	char *end;
	long long x;

	if (v->kind != Y_SCALAR || v->null || v->len == 0)
		goto bad;
	s = v->text;
	if (!(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
		goto bad;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (end != s + v->len)
		goto bad;
	if (errno == ERANGE || x < min || x > max) {
		manifest_yaml_error(c, v->mark, "%s: must be between %lld and %lld, got %s", path,
		                    min, max, manifest_yaml_describe(v, q, sizeof(q)));
		return false;
	}
	*out = x;
	return true;
bad:
	manifest_yaml_error(c, v->mark, "%s: expected an integer, got %s", path,
	                    manifest_yaml_describe(v, q, sizeof(q)));
	return false;
}

bool
manifest_yaml_get_u32(struct vctx *c, const char *path, const struct ynode *v, long long min,
                      long long max, uint32_t *out)
{
	long long x;

	if (!manifest_yaml_get_int(c, path, v, min, max, &x))
		return false;
	*out = (uint32_t)x;
	return true;
}

/* A duration with a unit ("2s", "1500ms"); a bare 0 needs none. */
bool
manifest_yaml_get_duration(struct vctx *c, const char *path, const struct ynode *v, bool positive,
                           int64_t *out)
{
	struct shoal_err err;
	const char *s;
	int64_t ms;

	if (!manifest_yaml_get_str(c, path, v, &s))
		return false;
	if (strcmp(s, "0") == 0) {
		ms = 0;
	} else if (util_parse_duration_ms(s, &ms, &err) == -1) {
		manifest_yaml_error(c, v->mark, "%s: %s", path, err.msg);
		return false;
	}
	if (positive && ms <= 0) {
		manifest_yaml_error(c, v->mark, "%s: must be greater than 0", path);
		return false;
	}
	if (ms > manifest_limits[LIM_DURATION].max) {
		manifest_yaml_error(c, v->mark, "%s: must be at most %lld ms", path,
		                    manifest_limits[LIM_DURATION].max);
		return false;
	}
	*out = ms;
	return true;
}

/* Pick names[i] for the value; the message lists every choice. */
bool
manifest_yaml_get_enum(struct vctx *c, const char *path, const struct ynode *v,
                       const char *const *names, size_t n, int *out)
{
	char want[160] = "";
	manifest_qbuf q;

	if (v->kind == Y_SCALAR && !v->null) {
		for (size_t i = 0; i < n; i++) {
			if (manifest_yaml_scalar_is(v, names[i])) {
				*out = (int)i;
				return true;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		size_t o = strlen(want);
		snprintf(want + o, sizeof(want) - o, "%s%s", names[i],
		         i + 2 == n   ? " or "
		         : i + 1 == n ? ""
		                      : ", ");
	}
	manifest_yaml_error(c, v->mark, "%s: invalid value %s (want %s)", path,
	                    manifest_yaml_describe(v, q, sizeof(q)), want);
	return false;
}

/* true or false, as YAML 1.2's core schema spells them (Compose's booleans). */
bool
manifest_yaml_get_bool(struct vctx *c, const char *path, const struct ynode *v, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE"};
	static const char *const no[] = {"false", "False", "FALSE"};
	manifest_qbuf q;

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (manifest_yaml_scalar_is(v, yes[i]) || manifest_yaml_scalar_is(v, no[i])) {
			*out = manifest_yaml_scalar_is(v, yes[i]);
			return true;
		}
	}
	manifest_yaml_error(c, v->mark, "%s: expected true or false, got %s", path,
	                    manifest_yaml_describe(v, q, sizeof(q)));
	return false;
}

/*
 * Split a command string into words as a POSIX shell would, without
 * expansions: Compose does the same (shlex), and it lets an argument hold a
 * space by quoting it. Returns NULL or why the string cannot be split.
 */
static const char *
shell_split(const char *s, struct manifest_argv *out)
{
	cleanup_free char *word = xmalloc(strlen(s) + 1);
	size_t wl = 0;
	bool in_word = false;
	const char *p = s;

	while (*p != '\0') {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			if (in_word)
				manifest_argv_push(out, word, wl);
			in_word = false;
			wl = 0;
			p++;
			continue;
		}
		in_word = true;
		if (*p == '\'') {
			for (p++; *p != '\0' && *p != '\''; p++)
				word[wl++] = *p;
			if (*p == '\0')
				return "unterminated single quote";
			p++;
		} else if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0' && strchr("\"\\$`", p[1]) != NULL)
					p++;
				word[wl++] = *p;
			}
			if (*p == '\0')
				return "unterminated double quote";
			p++;
		} else if (*p == '\\') {
			if (p[1] == '\0')
				return "trailing backslash";
			word[wl++] = p[1];
			p += 2;
		} else {
			word[wl++] = *p++;
		}
	}
	if (in_word)
		manifest_argv_push(out, word, wl);
	return NULL;
}

/*
 * A list of strings, or one string: split like a shell (command, entrypoint)
 * or, with shell_form, run as ["sh", "-c", STRING] (a health cmd, Docker's
 * CMD-SHELL).
 */
bool
manifest_yaml_get_argv(struct vctx *c, const char *path, const struct ynode *v, bool shell_form,
                       struct manifest_argv *out)
{
	struct manifest_argv a = {.set = true};
	const char *s, *why;
	manifest_qbuf q;
	bool ok = true;

	if (v->kind == Y_SCALAR) {
		if (!manifest_yaml_get_str(c, path, v, &s))
			return false;
		if (shell_form) {
			manifest_argv_push(&a, "sh", 2);
			manifest_argv_push(&a, "-c", 2);
			manifest_argv_push(&a, s, strlen(s));
		} else if ((why = shell_split(s, &a)) != NULL) {
			manifest_yaml_error(c, v->mark, "%s: cannot split %s into words: %s", path,
			                    manifest_yaml_describe(v, q, sizeof(q)), why);
			manifest_argv_free(&a);
			return false;
		}
		if (a.n == 0) {
			manifest_yaml_error(c, v->mark, "%s: must not be empty", path);
			manifest_argv_free(&a);
			return false;
		}
	} else if (v->kind == Y_SEQ) {
		for (size_t i = 0; i < v->n; i++) {
			char ipath[96];
			if (v->kids[i]->kind == Y_BAD) {
				ok = false;
				continue;
			}
			snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
			if (manifest_yaml_get_str(c, ipath, v->kids[i], &s))
				manifest_argv_push(&a, s, strlen(s));
			else
				ok = false;
		}
		if (ok && shell_form && a.n == 0) {
			manifest_yaml_error(c, v->mark, "%s: must not be empty", path);
			ok = false;
		}
	} else {
		manifest_yaml_error(c, v->mark,
		                    "%s: expected a list of strings or a string, got %s", path,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		ok = false;
	}
	if (!ok) {
		manifest_argv_free(&a);
		return false;
	}
	manifest_argv_free(out);
	*out = a;
	return true;
}

bool
manifest_yaml_want_map(struct vctx *c, const char *path, const struct ynode *v)
{
	manifest_qbuf q;

	if (v->kind == Y_MAP)
		return true;
	manifest_yaml_error(c, v->mark, "%s: expected a mapping, got %s", path,
	                    manifest_yaml_describe(v, q, sizeof(q)));
	return false;
}

/* Optimal string alignment distance (Levenshtein plus transpositions), for "did you mean". */
static size_t
edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b);
	size_t d[3][40];

	if (la >= 40 || lb >= 40)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t *cur = d[i % 3], *prev = d[(i + 2) % 3], *prev2 = d[(i + 1) % 3];
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = tolower((unsigned char)a[i - 1]) == b[j - 1] ? 0 : 1;
			size_t best = prev[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (prev[j - 1] + cost < best)
				best = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < best)
				best = prev2[j - 2] + 1;
			cur[j] = best;
		}
	}
	return d[la % 3][lb];
}

/*
 * Walk a mapping of known keys: report unknown keys (with the closest known
 * one), duplicate keys and non-string keys; call each field's handler once.
 * seen[i] is set to the key node of fields[i] when present. section is the
 * path of this mapping ("health", "ports[0]") or NULL at the top.
 */
void
manifest_yaml_walk_map(struct vctx *c, struct docstate *d, const struct ynode *map,
                       const char *section, const struct field *fields, size_t nfields,
                       const struct ynode **seen)
{
	for (size_t i = 0; i < nfields; i++)
		seen[i] = NULL;
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct ynode *k = map->kids[i], *v = map->kids[i + 1];
		char path[128], where[160], hint[80] = "";
		size_t idx, best = 0, bestd = 99;
		manifest_qbuf q;

		if (section)
			snprintf(where, sizeof(where), "in %s of %s", section, c->who);
		else
			snprintf(where, sizeof(where), "in %s", c->who);
		if (k->kind == Y_BAD)
			continue;
		if (k->kind != Y_SCALAR || k->null) {
			manifest_yaml_error(c, k->mark, "keys must be strings, got %s %s",
			                    manifest_yaml_describe(k, q, sizeof(q)), where);
			continue;
		}
		for (idx = 0; idx < nfields; idx++)
			if (manifest_yaml_scalar_is(k, fields[idx].name))
				break;
		if (idx == nfields) {
			size_t limit = k->len / 3 < 1 ? 1 : k->len / 3 > 3 ? 3 : k->len / 3;
			for (size_t j = 0; j < nfields; j++) {
				size_t dist = edit_distance(k->text, k->len, fields[j].name);
				if (dist < bestd) {
					bestd = dist;
					best = j;
				}
			}
			if (bestd <= limit)
				snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)",
				         fields[best].name);
			manifest_yaml_error(c, k->mark, "unknown key %s %s%s",
			                    manifest_quote(k->text, k->len, q, sizeof(q)), where,
			                    hint);
			continue;
		}
		if (seen[idx] != NULL) {
			manifest_yaml_error(c, k->mark,
			                    "duplicate key \"%s\" %s (first at %zu:%zu)",
			                    fields[idx].name, where, seen[idx]->mark.line + 1,
			                    seen[idx]->mark.column + 1);
			continue;
		}
		seen[idx] = k;
		if (v->kind == Y_BAD)
			continue;
		if (section)
			snprintf(path, sizeof(path), "%s.%s", section, fields[idx].name);
		else
			snprintf(path, sizeof(path), "%s", fields[idx].name);
		fields[idx].fn(c, d, path, v);
	}
}

/* 1-based line and column of byte offset off in buf, for reader errors that carry no mark. */
static yaml_mark_t
mark_at(const char *buf, size_t len, size_t off)
{
	yaml_mark_t m = {0};

	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			m.line++;
			m.column = 0;
		} else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
			m.column++;
		}
	}
	m.index = off;
	return m;
}

void
manifest_yaml_syntax_error(struct vctx *c, const yaml_parser_t *p, const char *buf, size_t len)
{
	yaml_mark_t m = p->problem_mark;
	const char *problem = p->problem ? p->problem : "unknown problem";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		SHOAL_ASSERT(!"libyaml out of memory");
		break;
	case YAML_READER_ERROR:
		/* The reader reports a byte offset, not a mark. */
		manifest_yaml_error(c, mark_at(buf, len, p->problem_offset), "invalid input: %s",
		                    problem);
		return;
	default:
		break;
	}
	if (p->context != NULL)
		manifest_yaml_error(c, m, "YAML syntax error: %s (%s at %zu:%zu)", problem,
		                    p->context, p->context_mark.line + 1,
		                    p->context_mark.column + 1);
	else
		manifest_yaml_error(c, m, "YAML syntax error: %s", problem);
}

/* True when a plain scalar means null in YAML's core schema. */
static bool
plain_null(const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.tag != NULL)
		return false;
	return ev->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

void
manifest_yaml_builder_event(struct vctx *c, struct builder *b, const yaml_event_t *ev)
{
	struct ynode *n;
	enum ykind kind;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (b->skip > 0)
			return;
		n = ynode_new(Y_SCALAR, ev->start_mark);
		n->len = ev->data.scalar.length;
		n->text = xmalloc(n->len + 1);
		memcpy(n->text, ev->data.scalar.value, n->len);
		n->text[n->len] = '\0';
		n->null = plain_null(ev);
		builder_attach(b, n);
		return;
	case YAML_ALIAS_EVENT:
		if (b->skip > 0)
			return;
		manifest_yaml_error(
		    c, ev->start_mark,
		    "aliases are not supported (*%.64s): write the value out in full",
		    (const char *)ev->data.alias.anchor);
		builder_attach(b, ynode_new(Y_BAD, ev->start_mark));
		return;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		kind = ev->type == YAML_MAPPING_START_EVENT ? Y_MAP : Y_SEQ;
		if (b->skip > 0) {
			b->skip++;
			return;
		}
		if (b->depth == MAX_DEPTH) {
			manifest_yaml_error(c, ev->start_mark,
			                    "nested too deeply (more than %d levels)", MAX_DEPTH);
			builder_attach(b, ynode_new(Y_BAD, ev->start_mark));
			b->skip = 1;
			/* libyaml's scanner costs O(depth) per token on flow nesting (a 200 KB file
			 * of brackets took 20 s): read no further than the first error. */
			b->stop = true;
			return;
		}
		n = ynode_new(kind, ev->start_mark);
		builder_attach(b, n);
		b->stack[b->depth++] = n;
		return;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->skip > 0)
			b->skip--;
		else if (b->depth > 0)
			b->depth--;
		return;
	default:
		return;
	}
}

yaml_mark_t
manifest_yaml_pos_mark(struct manifest_pos p)
{
	yaml_mark_t m = {0};

	m.line = p.line > 0 ? p.line - 1 : 0;
	m.column = p.column > 0 ? p.column - 1 : 0;
	return m;
}
