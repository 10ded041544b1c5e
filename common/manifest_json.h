#ifndef SHOAL_COMMON_MANIFEST_JSON_H
#define SHOAL_COMMON_MANIFEST_JSON_H

/* A service spec as the scheduler stores it and sends it to agents and to the CLI. */

struct service_spec;
struct shoal_err;

/*
 * Canonical JSON (compact, sorted keys, every field present, durations in ms,
 * sizes in bytes): equal specs give identical bytes. Caller frees with free().
 */
char *manifest_spec_to_json(const struct service_spec *spec);
/*
 * The spec as Assignments carry it to agents: without the keys (at any depth) whose value is
 * their default, which manifest_spec_from_json reads back to the same, and without replicas,
 * which is the scheduler's (a scale keeps the service's version: this form is one per
 * version). The bench's 514 bytes are 86. For the wire, not the store: the defaults of two
 * versions of Shoal may differ. NULL if json does not parse. Caller frees.
 */
char *manifest_spec_json_wire(const char *json);
/* Parse what manifest_spec_to_json wrote into *out (uninitialised on entry). Missing keys take
 * their defaults, unknown keys are ignored so an older scheduler reads a newer row. */
int manifest_spec_from_json(const char *json, struct service_spec *out, struct shoal_err *err);

#endif
