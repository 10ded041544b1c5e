/* shoal: the command-line client. Talks to the scheduler with the admin token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "apply.h"
#include "client.h"
#include "events.h"
#include "exec.h"
#include "version.h"
#include "log.h"
#include "logs.h"
#include "nodes.h"
#include "ps.h"
#include "services.h"
#include "util.h"

struct command {
	const char *name;
	const char *summary;
	const char *usage;
	int (*run)(struct cli_ctx *ctx, int argc, char **argv);
};

static const struct command commands[] = {
    {"apply", "create or update services from manifest files", apply_usage, apply_cmd},
    {"services", "list the services", services_usage, services_cmd},
    {"ps", "list the tasks of every service or of one", ps_usage, ps_cmd},
    {"inspect", "print a service, its spec and its tasks as JSON", services_inspect_usage,
     services_inspect_cmd},
    {"scale", "set the number of replicas of services", services_scale_usage, services_scale_cmd},
    {"rm", "remove services", services_rm_usage, services_rm_cmd},
    {"rollback", "return a service to its previous spec", services_rollback_usage,
     services_rollback_cmd},
    {"logs", "print the output of a service's or a task's containers", logs_usage, logs_cmd},
    {"nodes", "list the cluster's nodes", nodes_usage, nodes_cmd},
    {"drain", "move a node's tasks away and place no new ones there", nodes_drain_usage,
     nodes_drain_cmd},
    {"activate", "let a drained node take tasks again", nodes_activate_usage, nodes_activate_cmd},
    {"node", "remove a node (node rm) or set its labels (node update)", nodes_node_usage,
     nodes_node_cmd},
    {"events", "print the cluster's events as they happen", events_usage, events_cmd},
    {"exec", "run a command in a running task's container", exec_usage, exec_cmd},
    {"version", "print the client's and the scheduler's versions", version_usage, version_cmd},
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: shoal [OPTIONS] COMMAND [ARGS...]\n"
	           "\n"
	           "Shoal's command-line client: talks to shoal-scheduler with the admin token.\n"
	           "\n"
	           "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n"
	           "Options (before or after the command):\n"
	           "  --scheduler HOST:PORT  the scheduler (default $SHOAL_SCHEDULER, else "
	           "127.0.0.1:7100)\n"
	           "                         several: H1:P,H2:P,... tried in turn\n"
	           "  --token-file FILE      the admin token (default $SHOAL_TOKEN_FILE)\n"
	           "  -o json, --json       print listings as JSON\n"
	           "  -h, --help             this text; `shoal COMMAND --help` for a command\n"
	           "  --version              print the client's version\n"
	           "\n"
	           "Errors go to stderr and exit with status 1.\n");
}

int
main(int argc, char **argv)
{
	struct cli_ctx ctx = {.timeout_ms = 5000};
	const struct command *cmd = NULL;
	char **rest = xcalloc((size_t)argc + 1, sizeof(char *));
	int nrest = 0, rc;

	if (sodium_init() < 0) {
		fputs("shoal: cannot initialise libsodium\n", stderr);
		return 1;
	}
	log_init("shoal", LOG_ERR);
	ctx.scheduler = getenv("SHOAL_SCHEDULER");
	if (ctx.scheduler == NULL || ctx.scheduler[0] == '\0')
		ctx.scheduler = "127.0.0.1:7100";
	ctx.token_file = getenv("SHOAL_TOKEN_FILE");
	if (ctx.token_file && ctx.token_file[0] == '\0')
		ctx.token_file = NULL;

	/* Global options may stand anywhere; what is left is the command and its arguments. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		/* After "--" everything is the command's (shoal exec TASK -- ls -o). */
		if (strcmp(a, "--") == 0) {
			while (i < argc)
				rest[nrest++] = argv[i++];
			break;
		}
		if ((strcmp(a, "--scheduler") == 0 || strcmp(a, "--token-file") == 0 ||
		     strcmp(a, "-o") == 0) &&
		    i + 1 >= argc) {
			fprintf(stderr, "shoal: %s needs a value\n", a);
			free(rest);
			return 1;
		}
		if (strcmp(a, "--scheduler") == 0) {
			ctx.scheduler = argv[++i];
		} else if (strcmp(a, "--token-file") == 0) {
			ctx.token_file = argv[++i];
		} else if (strcmp(a, "-o") == 0) {
			if (strcmp(argv[++i], "json") != 0) {
				fprintf(stderr, "shoal: -o takes json\n");
				free(rest);
				return 1;
			}
			ctx.json = 1;
		} else if (strcmp(a, "--json") == 0) {
			ctx.json = 1;
		} else {
			rest[nrest++] = argv[i];
		}
	}
	if (nrest == 0) {
		usage(stderr);
		free(rest);
		return 1;
	}
	if (strcmp(rest[0], "--version") == 0) {
		printf("shoal %s\n", version_string());
		free(rest);
		return 0;
	}
	if (strcmp(rest[0], "-h") == 0 || strcmp(rest[0], "--help") == 0 ||
	    strcmp(rest[0], "help") == 0) {
		usage(stdout);
		free(rest);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, rest[0]) == 0)
			cmd = &commands[i];
	if (cmd == NULL) {
		fprintf(stderr, "shoal: unknown command \"%s\" (see shoal --help)\n", rest[0]);
		free(rest);
		return 1;
	}
	for (int i = 1; i < nrest && strcmp(rest[i], "--") != 0; i++) {
		if (strcmp(rest[i], "-h") == 0 || strcmp(rest[i], "--help") == 0) {
			fputs(cmd->usage, stdout);
			free(rest);
			return 0;
		}
	}
	rc = cmd->run(&ctx, nrest, rest);
	free(rest);
	return rc;
}
