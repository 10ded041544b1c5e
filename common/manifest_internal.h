#ifndef SHOAL_COMMON_MANIFEST_INTERNAL_H
#define SHOAL_COMMON_MANIFEST_INTERNAL_H

/*
 * What the spec's files share: manifest.c and manifest_yaml.c (the YAML reader),
 * manifest_spec.c (the spec, its limits and its check) and manifest_json.c (the JSON form).
 * Not for use outside them and their unit test: everything else goes through manifest.h,
 * manifest_spec.h and manifest_json.h.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "manifest_spec-t.h"

/*
 * Every bounded number of a spec, in one table. The YAML reader takes its ranges from here,
 * and manifest_spec_check (the CLI's last step, and the scheduler's check of every spec it is
 * sent) holds a finished spec to the same ranges: the two can no longer drift apart.
 */
enum limit_id {
	LIM_REPLICAS,
	LIM_RESTART_MAX,
	LIM_MAX_PER_NODE,
	LIM_PARALLELISM,
	LIM_RETRIES,
	LIM_PORT,
	LIM_CPU_MILLIS, /* when set: cpus 0.001 to 1024 */
	LIM_MEMORY,     /* when set: 4Mi up to util_parse_bytes's own cap */
	LIM_PIDS,       /* when set: up to the kernel's PID_MAX_LIMIT */
	LIM_DURATION,   /* ms, up to util_parse_duration_ms's own cap */
	LIM_MAX_CONNS,  /* proxy.max_conns_per_replica: 0 = unlimited */
	LIM_COUNT,
};

struct manifest_limit {
	long long min, max;
};
extern const struct manifest_limit manifest_limits[LIM_COUNT];

/* A limit's bounds as two arguments: get_int(..., LIM(LIM_PORT), ...). */
#define LIM(id) manifest_limits[id].min, manifest_limits[id].max

/* The names of the enums, indexed by their values: the YAML and the JSON spelling. */
extern const char *const manifest_restart_names[3];
extern const char *const manifest_order_names[2];
extern const char *const manifest_action_names[3];
extern const char *const manifest_health_names[4];
extern const char *const manifest_network_names[2];
extern const char *const manifest_proxy_protocol_names[3];
extern const char *const manifest_proxy_mode_names[2];

/* Append a copy of line to *errs, within MANIFEST_MAX_ERRORS. */
void manifest_errs_add(struct manifest_errors *errs, const char *line);
char *manifest_xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

typedef char manifest_qbuf[200];
/* Quote user text for a message into buf: at most 40 characters, control bytes escaped. */
const char *manifest_quote(const char *s, size_t len, char *buf, size_t size);

void manifest_argv_free(struct manifest_argv *a);
/* Append a copy of the len bytes at s. */
void manifest_argv_push(struct manifest_argv *a, const char *s, size_t len);

/* An environment variable's name: no '=', no space, not empty, no NUL within len. */
bool manifest_env_name_ok(const char *s, size_t len);
/* A constraint's label or value: no space, control byte, '=' or '!', not empty. */
bool manifest_constraint_word_ok(const char *s, size_t n);

#endif
