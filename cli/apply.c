#include "apply.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client.h"
#include "err.h"
#include "manifest.h"
#include "manifest_set.h"
#include "manifest_json.h"
#include "shoal.pb-c.h"
#include "util.h"
#include "watch.h"

const char apply_usage[] =
    "usage: shoal apply -f FILE|DIR|- [-f ...] [--dry-run] [-d]\n"
    "\n"
    "Create or update the services described in manifest files (manifests/README.md), all or\n"
    "nothing. Every file is checked here first: any mistake is printed as FILE:LINE:COL and\n"
    "nothing is sent. Prints one line per service: created, updated, scaled or unchanged.\n"
    "Then waits until every changed service converged (each replica running, healthy, at\n"
    "the new version), showing each slot's progress: live lines in a terminal, one line per\n"
    "event otherwise. Exits 1 with the reason if the update pauses, rolls back or makes no\n"
    "progress for update.timeout. Interrupting the wait does not stop the rollout.\n"
    "\n"
    "Options:\n"
    "  -f, --file FILE   a manifest file, a directory (its *.yaml and *.yml files, in name\n"
    "                    order), or - for standard input (repeatable)\n"
    "  --dry-run         have the scheduler check everything and say what would change\n"
    "                    (service NAME would be created|updated|scaled|unchanged); change\n"
    "                    nothing\n"
    "  -d, --detach      return at once, without waiting for the rollout\n";

#define APPLY_STDIN_NAME "<stdin>"

static void apply_error(struct manifest_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A line in the manifest parser's list, so file and parse errors print alike. */
static void
apply_error(struct manifest_errors *errs, const char *fmt, ...)
{
	va_list ap;
	char *line;

	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) == -1)
		abort();
	va_end(ap);
	errs->lines = xrealloc(errs->lines, (errs->n + 1) * sizeof(*errs->lines));
	errs->lines[errs->n++] = line;
}

/* Read all of in and parse it as <stdin>; past MANIFEST_MAX_BYTES the parser refuses it, so
 * reading stops one byte after the limit instead of filling memory from an endless pipe. */
static int
apply_parse_stream(FILE *in, struct manifest *m, struct manifest_errors *errs)
{
	char *buf = NULL;
	size_t len = 0, cap = 0, got;
	int r;

	memset(m, 0, sizeof(*m));
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = xrealloc(buf, cap);
		}
		got = fread(buf + len, 1, cap - len, in);
		len += got;
	} while (got > 0 && len <= MANIFEST_MAX_BYTES);
	if (ferror(in)) {
		apply_error(errs, "%s: read: %s", APPLY_STDIN_NAME, strerror(errno));
		free(buf);
		return -1;
	}
	r = manifest_parse_buffer(APPLY_STDIN_NAME, buf ? buf : "", len, m, errs);
	free(buf);
	return r;
}

/* A published port of set that a service of the cluster other than its own publishes. */
static int
apply_check_owners(const struct manifest *set, size_t nfiles, const struct apply_owner *owners,
                   size_t nowners, struct manifest_errors *errs)
{
	int rc = 0;

	for (size_t a = 0; a < nfiles; a++)
		for (size_t i = 0; i < set[a].n_services; i++) {
			const struct service_spec *s = &set[a].services[i];

			for (size_t p = 0; p < s->n_ports; p++)
				for (size_t k = 0; k < nowners; k++) {
					const struct manifest_pos *pos =
					    &set[a].origins[i].ports[p];

					if (s->ports[p].published == 0 ||
					    owners[k].port != s->ports[p].published ||
					    (s->name && strcmp(owners[k].service, s->name) == 0))
						continue;
					apply_error(errs,
					            "%s:%u:%u: ports[%zu]: port %u is already "
					            "published by service %s (in the cluster)",
					            set[a].file, pos->line, pos->column, p,
					            (unsigned)owners[k].port, owners[k].service);
					rc = -1;
				}
		}
	return rc;
}

int
apply_build(const char *const *files, size_t nfiles, FILE *in, struct apply_request *out,
            struct manifest_errors *errs)
{
	return apply_build_owned(files, nfiles, in, NULL, 0, out, errs);
}

int
apply_build_owned(const char *const *files, size_t nfiles, FILE *in,
                  const struct apply_owner *owners, size_t nowners, struct apply_request *out,
                  struct manifest_errors *errs)
{
	struct manifest *set = xcalloc(nfiles ? nfiles : 1, sizeof(*set));
	size_t errors_before = errs->n, total = 0;
	bool stdin_seen = false;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	/* Every file is parsed even after a bad one: the user fixes them all in one go. */
	for (size_t i = 0; i < nfiles; i++) {
		if (strcmp(files[i], "-") == 0) {
			if (stdin_seen) {
				apply_error(errs, "%s: given twice (-f -)", APPLY_STDIN_NAME);
				rc = -1;
				continue;
			}
			stdin_seen = true;
			if (apply_parse_stream(in, &set[i], errs) == -1)
				rc = -1;
		} else if (manifest_parse_file(files[i], &set[i], errs) == -1) {
			rc = -1;
		}
		total += set[i].n_services;
	}
	/*
	 * Names and published ports must also be unique across the files of one apply. A file
	 * that failed is empty here, so the check still reports the clashes of the others.
	 */
	if (manifest_set_check(set, nfiles, errs) == -1)
		rc = -1;
	if (apply_check_owners(set, nfiles, owners, nowners, errs) == -1)
		rc = -1;
	if (rc == 0 && total == 0) {
		apply_error(errs, "%s: no service in %s", nfiles == 1 ? files[0] : "manifests",
		            nfiles == 1 ? "this file" : "these files");
		rc = -1;
	}
	if (rc == 0) {
		out->specs_json = xcalloc(total, sizeof(*out->specs_json));
		for (size_t i = 0; i < nfiles; i++)
			for (size_t j = 0; j < set[i].n_services; j++)
				out->specs_json[out->n++] =
				    manifest_spec_to_json(&set[i].services[j]);
	}
	/* A parser that failed without a line would make a silent exit 1. */
	if (rc == -1 && errs->n == errors_before)
		apply_error(errs, "manifests: invalid");
	for (size_t i = 0; i < nfiles; i++)
		manifest_free(&set[i]);
	free(set);
	return rc;
}

void
apply_request_free(struct apply_request *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->specs_json[i]);
	free(r->specs_json);
	r->specs_json = NULL;
	r->n = 0;
}

/*
 * The ports the cluster's services publish now, so that a clash with one of them is named at
 * its FILE:LINE:COL (the scheduler, which checks it again, cannot know where it was written).
 * Best effort: without an answer the scheduler's own check stands. Keeps *reply for the
 * names; the count of *out.
 */
static size_t
apply_cluster_owners(struct cli_ctx *ctx, Shoal__Envelope **reply, struct apply_owner **out)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ListServices ls = SHOAL__LIST_SERVICES__INIT;
	const Shoal__ListServicesReply *lr;
	struct shoal_err err;
	size_t n = 0;

	req.body_case = SHOAL__ENVELOPE__BODY_LIST_SERVICES;
	req.list_services = &ls;
	if (client_call_raw(ctx, &req, reply, &err) == -1 ||
	    (*reply)->body_case != SHOAL__ENVELOPE__BODY_LIST_SERVICES_REPLY)
		return 0;
	lr = (*reply)->list_services_reply;
	for (size_t i = 0; i < lr->n_services; i++) {
		const Shoal__ServiceInfo *si = lr->services[i];
		struct service_spec spec;

		if (strcmp(si->update_state, "removing") == 0 ||
		    manifest_spec_from_json(si->spec_json, &spec, &err) == -1)
			continue;
		for (size_t p = 0; p < spec.n_ports; p++)
			if (spec.ports[p].published != 0) {
				*out = xrealloc(*out, (n + 1) * sizeof(**out));
				(*out)[n++] =
				    (struct apply_owner){spec.ports[p].published, si->name};
			}
		manifest_spec_free(&spec);
	}
	return n;
}

static int
apply_name_compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add FILE, or every *.yaml and *.yml of a directory FILE (sorted), to files (grown; the
 * names are kept in *owned for freeing). -1 with a message when a directory has none. */
static int
apply_add_path(const char *path, const char ***files, size_t *n, char ***owned, size_t *nowned)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	size_t first = *nowned;

	if (strcmp(path, "-") == 0 || stat(path, &st) == -1 || !S_ISDIR(st.st_mode)) {
		*files = xrealloc(*files, (*n + 1) * sizeof(**files));
		(*files)[(*n)++] = path;
		return 0;
	}
	d = opendir(path);
	if (d == NULL) {
		fprintf(stderr, "shoal apply: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' ||
		    !((len > 5 && strcmp(de->d_name + len - 5, ".yaml") == 0) ||
		      (len > 4 && strcmp(de->d_name + len - 4, ".yml") == 0)))
			continue;
		*owned = xrealloc(*owned, (*nowned + 1) * sizeof(**owned));
		(*owned)[(*nowned)++] = xasprintf("%s/%s", path, de->d_name);
	}
	closedir(d);
	if (*nowned == first) {
		fprintf(stderr, "shoal apply: %s: no *.yaml or *.yml file in this directory\n",
		        path);
		return -1;
	}
	qsort(*owned + first, *nowned - first, sizeof(**owned), apply_name_compare);
	*files = xrealloc(*files, (*n + *nowned - first) * sizeof(**files));
	for (size_t i = first; i < *nowned; i++)
		(*files)[(*n)++] = (*owned)[i];
	return 0;
}

int
apply_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__Apply ap = SHOAL__APPLY__INIT;
	Shoal__Envelope *reply = NULL;
	struct manifest_errors errs = {0};
	struct apply_request ar;
	struct shoal_err err;
	const char **files = NULL;
	char **owned = NULL;
	Shoal__Envelope *lreply = NULL;
	struct apply_owner *owners = NULL;
	size_t nfiles = 0, nowned = 0, nowners = 0;
	bool detach = false;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--file") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "shoal apply: %s needs a file\n%s", argv[i],
				        apply_usage);
				goto out;
			}
			if (apply_add_path(argv[++i], &files, &nfiles, &owned, &nowned) == -1)
				goto out;
		} else if (strncmp(argv[i], "-f", 2) == 0 && argv[i][2] != '\0') {
			if (apply_add_path(argv[i] + 2, &files, &nfiles, &owned, &nowned) == -1)
				goto out;
		} else if (strcmp(argv[i], "--dry-run") == 0) {
			ap.dry_run = true;
		} else if (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--detach") == 0) {
			detach = true;
		} else {
			fprintf(stderr, "shoal apply: unexpected argument %s\n%s", argv[i],
			        apply_usage);
			goto out;
		}
	}
	if (nfiles == 0) {
		fprintf(stderr, "shoal apply: -f FILE is required\n%s", apply_usage);
		goto out;
	}
	nowners = apply_cluster_owners(ctx, &lreply, &owners);
	{
		int built = apply_build_owned(files, nfiles, stdin, owners, nowners, &ar, &errs);
		/* Warnings first (accepted spellings), then any error: both with FILE:LINE:COL. */
		for (size_t i = 0; i < errs.nwarnings; i++)
			fprintf(stderr, "%s\n", errs.warnings[i]);
		for (size_t i = 0; built == -1 && i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.lines[i]);
		manifest_errors_free(&errs);
		if (built == -1)
			goto out;
	}
	ap.specs_json = ar.specs_json;
	ap.n_specs_json = ar.n;
	req.body_case = SHOAL__ENVELOPE__BODY_APPLY;
	req.apply = &ap;
	if (client_call_raw(ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
	} else if (reply->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		/* The scheduler's check is the CLI's, so this is the store failing or a clash with
		 * the cluster (a port another service holds): every problem, one per line. */
		fprintf(stderr, "shoal: %s\n", reply->error->message);
	} else if (reply->body_case != SHOAL__ENVELOPE__BODY_APPLY_REPLY) {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
	} else {
		const Shoal__ApplyReply *r = reply->apply_reply;
		const char **watch = xcalloc(r->n_changes + 1, sizeof(*watch));
		size_t nwatch = 0;
		for (size_t i = 0; i < r->n_changes; i++) {
			printf("service %s %s%s\n", r->changes[i]->name,
			       ap.dry_run ? "would be " : "", r->changes[i]->action);
			if (strcmp(r->changes[i]->action, "unchanged") != 0)
				watch[nwatch++] = r->changes[i]->name;
		}
		fflush(stdout);
		/* A dry run changed nothing: there is no rollout to watch. */
		rc = detach || ap.dry_run
		         ? 0
		         : watch_rollout(ctx, watch, nwatch, r->events_seq, WATCH_APPLY);
		free(watch);
	}
	if (reply)
		shoal__envelope__free_unpacked(reply, NULL);
	apply_request_free(&ar);
out:
	free(owners);
	if (lreply)
		shoal__envelope__free_unpacked(lreply, NULL);
	free(files);
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	return rc;
}
