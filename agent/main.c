/* shoal-agent: one per node. Registers with the scheduler and reports this node's resources. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "log.h"
#include "netnode.h"
#include "server.h"
#include "util.h"

static const char cleanup_usage[] =
    "usage: shoal-agent cleanup --data-dir DIR\n"
    "\n"
    "Remove what the agent made on this node: stop and remove every container under DIR\n"
    "(cgroups, mounts, state) and the task records; and the container network it made in\n"
    "this network namespace: bridge shoal0, its routes to other nodes (proto 84), leftover\n"
    "veths, the masquerade rule, the address leases. Images stay. Run it with the agent\n"
    "stopped, e.g. when taking a node out of the cluster for good.\n";

static const char usage_text[] =
    "usage: shoal-agent --scheduler HOST:PORT --token-file FILE --name NAME --address ADDR\n"
    "                   --data-dir DIR [--label KEY=VALUE ...] [options]\n"
    "       shoal-agent cleanup --data-dir DIR\n"
    "\n"
    "Joins this node to a Shoal cluster: registers its CPUs and memory with the scheduler,\n"
    "runs the containers the scheduler assigns it, reports their state, and reconnects\n"
    "with back-off when the scheduler goes away. DIR holds the node's images and\n"
    "containers; containers keep running when the agent stops, and a restarted agent\n"
    "adopts them.\n"
    "\n"
    "Options:\n"
    "  --scheduler HOST:PORT  the scheduler (port 7100 by default on its side)\n"
    "  --token-file FILE      the worker join token (DATA_DIR/worker.token on the scheduler)\n"
    "  --name NAME            this node's name, stable across restarts (its identity)\n"
    "  --address ADDR         this node's IPv4 address as other nodes reach it\n"
    "  --data-dir DIR         the agent's state directory\n"
    "  --label KEY=VALUE      a node label for placement constraints (repeatable)\n"
    "  --image-dir DIR        import missing images from the OCI layouts in DIR, named\n"
    "                         NAME_TAG/ (shoal/web:1 -> DIR/web_1/)\n"
    "  --cpus N               advertise at most N CPUs (default: what the node has)\n"
    "  --memory SIZE          advertise at most SIZE of memory (e.g. 2Gi)\n"
    "  --masquerade           masquerade containers' traffic leaving the cluster (needs\n"
    "                         iptables); traffic between containers is never NATed\n"
    "  --log-level LEVEL      error, warn, notice, info (default) or debug\n"
    "  -h, --help             this text\n";

/* shoal-agent cleanup --data-dir DIR: remove what the agent made on this node. */
static int
cleanup_main(int argc, char **argv)
{
	const char *dir = NULL;
	struct shoal_err err = {0};
	size_t removed;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(cleanup_usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "shoal-agent cleanup: unexpected argument %s\n%s", argv[i],
			        cleanup_usage);
			return 1;
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "shoal-agent cleanup: needs --data-dir DIR\n");
		return 1;
	}
	log_init("agent", LOG_INFO);
	if (tasks_cleanup(dir, &removed, &err) == -1) {
		fprintf(stderr, "shoal-agent cleanup: %s\n", err.msg);
		return 1;
	}
	printf("removed %zu container%s\n", removed, removed == 1 ? "" : "s");
	if (netnode_cleanup(dir, &err) == -1) {
		fprintf(stderr, "shoal-agent cleanup: network: %s\n", err.msg);
		return 1;
	}
	printf("removed the container network\n");
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"scheduler", required_argument, NULL, 's'},
	    {"token-file", required_argument, NULL, 't'},
	    {"name", required_argument, NULL, 'n'},
	    {"address", required_argument, NULL, 'a'},
	    {"data-dir", required_argument, NULL, 'd'},
	    {"image-dir", required_argument, NULL, 'I'},
	    {"label", required_argument, NULL, 'l'},
	    {"cpus", required_argument, NULL, 'c'},
	    {"memory", required_argument, NULL, 'm'},
	    {"log-level", required_argument, NULL, 'L'},
	    {"masquerade", no_argument, NULL, 'M'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	struct agent_options o = {0};
	struct agent_server agent;
	struct shoal_err err;
	int c, level = LOG_INFO, rc;

	if (sodium_init() < 0) {
		fputs("shoal-agent: cannot initialise libsodium\n", stderr);
		return 1;
	}
	if (argc >= 2 && strcmp(argv[1], "cleanup") == 0)
		return cleanup_main(argc - 1, argv + 1);
	o.labels = xcalloc((size_t)argc, sizeof(char *));
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.scheduler = optarg;
			break;
		case 't':
			o.token_file = optarg;
			break;
		case 'n':
			o.name = optarg;
			break;
		case 'a':
			o.address = optarg;
			break;
		case 'd':
			o.data_dir = optarg;
			break;
		case 'I':
			o.image_dir = optarg;
			break;
		case 'l':
			o.labels[o.nlabels++] = optarg;
			break;
		case 'c': {
			char *end;
			double v = strtod(optarg, &end);
			if (end == optarg || *end || v <= 0) {
				fprintf(stderr, "shoal-agent: --cpus %s: want a positive number\n",
				        optarg);
				return 1;
			}
			o.cpu_millis = (int64_t)(v * 1000);
			break;
		}
		case 'm':
			if (util_parse_bytes(optarg, &o.memory_bytes, &err) == -1) {
				fprintf(stderr, "shoal-agent: --memory: %s\n", err.msg);
				return 1;
			}
			break;
		case 'M':
			o.masquerade = true;
			break;
		case 'L':
			level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "shoal-agent: unknown log level %s\n", optarg);
				return 1;
			}
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return 1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "shoal-agent: unexpected argument %s\n", argv[optind]);
		return 1;
	}
	if (!o.scheduler || !o.token_file || !o.name || !o.address || !o.data_dir) {
		fprintf(stderr, "shoal-agent: --scheduler, --token-file, --name, --address and "
		                "--data-dir are required (see --help)\n");
		return 1;
	}
	log_init("agent", level);
	if (agent_server_init(&agent, &o, &err) == -1) {
		shoal_log(LOG_ERR, "cannot start: %s", err.msg);
		free(o.labels);
		return 1;
	}
	free(o.labels);
	rc = agent_server_run(&agent);
	agent_server_free(&agent);
	return rc == 0 ? 0 : 1;
}
