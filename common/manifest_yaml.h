#ifndef SHOAL_COMMON_MANIFEST_YAML_H
#define SHOAL_COMMON_MANIFEST_YAML_H

/*
 * The YAML half of the manifest reader, apart from the schema: libyaml's events into a small
 * tree, errors gathered with their position and handed over in file order, typed getters that
 * report what the user wrote, and the walk over a mapping of known keys with "did you mean".
 * Internal to manifest.c, which holds the schema (one handler per key) on top of it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "manifest-t.h"
#include "manifest_spec.h"

/* A manifest nests four levels at most; anything far deeper is a mistake or an attack, and
 * bounding it keeps the recursive walkers off the end of the stack. */
#define MAX_DEPTH 32

/*
 * The documents are read from libyaml's events into this small tree rather
 * than with yaml_parser_load(): the events show aliases (which we reject at
 * their position) and keep every mapping key, so duplicates can be reported.
 */
enum ykind { Y_SCALAR, Y_SEQ, Y_MAP, Y_BAD /* already reported: skip silently */ };

struct ynode {
	enum ykind kind;
	yaml_mark_t mark;
	char *text; /* scalar, NUL-terminated; len may be shorter than strlen if it holds a NUL */
	size_t len;
	bool null;           /* plain ~, null or empty */
	struct ynode **kids; /* sequence items; mapping keys and values alternate */
	size_t n, cap;
};

struct builder {
	struct ynode *root;
	struct ynode *stack[MAX_DEPTH];
	int depth;
	int skip;  /* > 0 while inside a subtree past MAX_DEPTH: its nesting level */
	bool stop; /* nested too deeply: the parse ends here */
};

/* An error waiting to be sorted into file order. */
struct pending {
	size_t line, column, seq;
	char *text;
};

struct vctx {
	const char *file;
	struct manifest_errors *errs;
	struct pending
	    *pending;  /* this parse's errors, flushed in file order by manifest_yaml_flush */
	size_t nerr;   /* errors reported by this parse */
	char who[112]; /* "service web" or "document 2", for messages */
};

struct docstate;
typedef void (*field_fn)(struct vctx *c, struct docstate *d, const char *path,
                         const struct ynode *v);
struct field {
	const char *name;
	field_fn fn;
};

void manifest_yaml_node_free(struct ynode *n);

/* A position as libyaml counts it (0-based), for errors about a spec already read. */
yaml_mark_t manifest_yaml_pos_mark(struct manifest_pos p);

/* Record an error at mark m ("FILE:LINE:COL: message"); manifest_yaml_flush hands them over. */
void manifest_yaml_error(struct vctx *c, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Append this parse's errors to c->errs, sorted by position. */
void manifest_yaml_flush(struct vctx *c);

/* What the user wrote, as "got ..." reads it ("a mapping", "null", a quoted scalar). */
const char *manifest_yaml_describe(const struct ynode *n, char *buf, size_t size);
/* True when n is the scalar s, byte for byte. */
bool manifest_yaml_scalar_is(const struct ynode *n, const char *s);

/* Typed values: true and *out set, or false with an error at v naming path. */
bool manifest_yaml_get_str(struct vctx *c, const char *path, const struct ynode *v,
                           const char **out);
bool manifest_yaml_get_int(struct vctx *c, const char *path, const struct ynode *v, long long min,
                           long long max, long long *out);
bool manifest_yaml_get_u32(struct vctx *c, const char *path, const struct ynode *v, long long min,
                           long long max, uint32_t *out);
/* "10s", "1.5h", "0": ms within the limits table's LIM_DURATION; positive: more than 0. */
bool manifest_yaml_get_duration(struct vctx *c, const char *path, const struct ynode *v,
                                bool positive, int64_t *out);
bool manifest_yaml_get_enum(struct vctx *c, const char *path, const struct ynode *v,
                            const char *const *names, size_t n, int *out);
bool manifest_yaml_get_bool(struct vctx *c, const char *path, const struct ynode *v, bool *out);
/* A list of strings, or one string split like a shell (or, shell_form, run by sh -c). */
bool manifest_yaml_get_argv(struct vctx *c, const char *path, const struct ynode *v,
                            bool shell_form, struct manifest_argv *out);
/* True when v is a mapping; an error otherwise. */
bool manifest_yaml_want_map(struct vctx *c, const char *path, const struct ynode *v);
/* Call each known key's handler once; unknown ("did you mean"), duplicate and non-string keys
 * are errors. seen[i]: fields[i]'s key node, or NULL. section: the mapping's path, or NULL. */
void manifest_yaml_walk_map(struct vctx *c, struct docstate *d, const struct ynode *map,
                            const char *section, const struct field *fields, size_t nfields,
                            const struct ynode **seen);

/* libyaml's own error, at its position. */
void manifest_yaml_syntax_error(struct vctx *c, const yaml_parser_t *p, const char *buf,
                                size_t len);
/* Add one event (not a stream or document boundary) to the tree b builds; b->stop past
 * MAX_DEPTH. */
void manifest_yaml_builder_event(struct vctx *c, struct builder *b, const yaml_event_t *ev);

#endif
