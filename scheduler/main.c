/* shoal-scheduler: one per cluster. `init` makes the cluster's secrets, `run` serves it. */
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cmdline.h"
#include "err.h"
#include "identity.h"
#include "log.h"
#include "rpc.h"
#include "server.h"
#include "token.h"
#include "util.h"

static const char usage_text[] =
    "usage: shoal-scheduler init --data-dir DIR [--force]\n"
    "       shoal-scheduler run --data-dir DIR [options]\n"
    "\n"
    "init  create DIR, the scheduler's signing key and the two join tokens\n"
    "      (DIR/worker.token for agents, DIR/admin.token for the CLI; mode 0600).\n"
    "      The tokens are printed once. Refuses to replace a cluster unless --force.\n"
    "      DIR/read.token is a third token, for the status page and /metrics only.\n"
    "run   serve agents and the CLI.\n"
    "\n"
    "Options:\n"
    "  --data-dir DIR            state directory (required)\n"
    "  --force                   init: replace an existing cluster (old tokens stop working)\n"
    "  --listen ADDR:PORT        address to serve on (default :7100)\n"
    "  --cluster-cidr CIDR       range that node container subnets (/24) come from\n"
    "                            (default 10.244.0.0/16)\n"
    "  --no-routes               send agents no node list: container subnets are routed by\n"
    "                            the network (cloud routes, BGP). Host-gateway routes cost\n"
    "                            O(nodes^2) bytes to spread; past a few thousand nodes this\n"
    "                            is the way\n"
    "  --heartbeat-interval DUR  how often agents report (default 1s); a node is down\n"
    "                            after 3 missed intervals\n"
    "  --max-heartbeats N        heartbeats a second from all nodes at most (default 5000;\n"
    "                            0: no cap): with more than N nodes the interval agents\n"
    "                            are told grows to nodes/N seconds, and so does the time to\n"
    "                            notice a lost node\n"
    "  --join-rate N             new node names accepted per second, after a burst of\n"
    "                            max(50, 10*N) (default 5); known nodes always rejoin\n"
    "  --http ADDR:PORT          serve /metrics (Prometheus) and the status page at /\n"
    "                            (default 127.0.0.1:7180; off: disables it). On an\n"
    "                            address other than loopback every request needs\n"
    "                            Authorization: Bearer <admin or read token>\n"
    "  --store URL               where the cluster state lives: sqlite (default: DIR/state.db,\n"
    "                            one scheduler) or etcd://H1:2379,H2:2379,H3:2379 (several\n"
    "                            schedulers, one leads; the others answer with its address)\n"
    "  --store-prefix PREFIX     etcd: the keys' prefix (default /shoal/)\n"
    "  --etcd-cacert FILE        etcd: CA bundle that signed its certificates (https)\n"
    "  --etcd-cert FILE          etcd: client certificate (with --etcd-key)\n"
    "  --etcd-key FILE           etcd: client certificate's key\n"
    "  --advertise HOST:PORT     the address agents and the CLI reach this scheduler at\n"
    "                            (default: --listen's; its host name for a wildcard)\n"
    "  --lease-ttl SECONDS       etcd: the leader's lease (default 3): a dead leader is\n"
    "                            replaced within about this\n"
    "  --log-level LEVEL         error, warn, notice, info (default) or debug\n"
    "  -h, --help                this text\n";

static int
cmd_init(const char *data_dir, bool force)
{
	struct rpc_identity id;
	struct shoal_err err;
	char tok[TOKEN_STRLEN];

	if (identity_init(data_dir, force, &id, &err) == -1) {
		fprintf(stderr, "shoal-scheduler: init: %s\n", err.msg);
		return 1;
	}
	/* Printed once to the operator, never logged. */
	printf("Cluster created in %s.\n\n", data_dir);
	token_format(&id.worker, tok, sizeof(tok));
	printf("Worker token (for shoal-agent --token-file), saved in %s/worker.token:\n  %s\n\n",
	       data_dir, tok);
	token_format(&id.admin, tok, sizeof(tok));
	printf("Admin token (for shoal --token-file), saved in %s/admin.token:\n  %s\n", data_dir,
	       tok);
	{
		cleanup_free char *path = xasprintf("%s/read.token", data_dir);
		struct token rd;
		bool made;

		/* A read token of a replaced cluster names the old key: make a new one. */
		unlink(path);
		if (identity_read_token(data_dir, id.sign_pk, &rd, &made, &err) == -1) {
			fprintf(stderr, "shoal-scheduler: init: %s\n", err.msg);
			identity_wipe(&id);
			return 1;
		}
		token_format(&rd, tok, sizeof(tok));
		token_wipe(&rd);
		printf("\nRead-only token (for the status page and /metrics), saved in "
		       "%s/read.token:\n  %s\n",
		       data_dir, tok);
	}
	sodium_memzero(tok, sizeof(tok));
	identity_wipe(&id);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"data-dir", required_argument, NULL, 'd'},
	    {"force", no_argument, NULL, 'f'},
	    {"listen", required_argument, NULL, 'l'},
	    {"cluster-cidr", required_argument, NULL, 'c'},
	    {"no-routes", no_argument, NULL, 'R'},
	    {"heartbeat-interval", required_argument, NULL, 'i'},
	    {"join-rate", required_argument, NULL, 'J'},
	    {"max-heartbeats", required_argument, NULL, 'B'},
	    {"log-level", required_argument, NULL, 'L'},
	    {"http", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},
	    {"store", required_argument, NULL, 'S'},
	    {"store-prefix", required_argument, NULL, 'P'},
	    {"etcd-cacert", required_argument, NULL, 'A'},
	    {"etcd-cert", required_argument, NULL, 'C'},
	    {"etcd-key", required_argument, NULL, 'K'},
	    {"advertise", required_argument, NULL, 'a'},
	    {"lease-ttl", required_argument, NULL, 'T'},
	    {0, 0, 0, 0},
	};
	struct sched_options so = {.http = "127.0.0.1:7180"};
	struct sched_server srv;
	struct shoal_err err;
	const char *cmd;
	bool force = false;
	int c, level = LOG_INFO, rc;

	if (sodium_init() < 0) {
		fputs("shoal-scheduler: cannot initialise libsodium\n", stderr);
		return 1;
	}
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			so.data_dir = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'l':
			so.listen = optarg;
			break;
		case 'c':
			so.cluster_cidr = optarg;
			break;
		case 'R':
			so.no_routes = true;
			break;
		case 'i': {
			int64_t ms;
			if (util_parse_duration_ms(optarg, &ms, &err) == -1 || ms < 50 ||
			    ms > 60000) {
				fprintf(stderr,
				        "shoal-scheduler: --heartbeat-interval %s: want 50ms to "
				        "60s\n",
				        optarg);
				return 1;
			}
			so.heartbeat_ms = (uint32_t)ms;
			break;
		}
		case 'B': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (end == optarg || *end || optarg[0] == '-' || v > 1000000) {
				fprintf(stderr,
				        "shoal-scheduler: --max-heartbeats %s: want 0 (no cap) to "
				        "1000000 a second\n",
				        optarg);
				return 1;
			}
			so.max_heartbeats = (uint32_t)v;
			so.no_heartbeat_cap = v == 0;
			break;
		}
		case 'J': {
			char *end;
			double v = strtod(optarg, &end);
			if (end == optarg || *end || !(v >= 0.01 && v <= 1e6)) {
				fprintf(stderr,
				        "shoal-scheduler: --join-rate %s: want 0.01 to 1000000 new "
				        "names a second\n",
				        optarg);
				return 1;
			}
			so.join_rate = v;
			break;
		}
		case 'L':
			level = cmdline_log_level("shoal-scheduler", optarg);
			if (level < 0)
				return 1;
			break;
		case 'H':
			so.http = optarg;
			break;
		case 'S':
			if (strcmp(optarg, "sqlite") != 0 && strncmp(optarg, "etcd://", 7) != 0) {
				fprintf(stderr,
				        "shoal-scheduler: --store %s: want sqlite or "
				        "etcd://HOST:PORT[,HOST:PORT...]\n",
				        optarg);
				return 1;
			}
			so.store = optarg;
			break;
		case 'P':
			so.store_prefix = optarg;
			break;
		case 'A':
			so.etcd_cacert = optarg;
			break;
		case 'C':
			so.etcd_cert = optarg;
			break;
		case 'K':
			so.etcd_key = optarg;
			break;
		case 'a':
			so.advertise = optarg;
			break;
		case 'T': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (end == optarg || *end || v < 1 || v > 60) {
				fprintf(stderr,
				        "shoal-scheduler: --lease-ttl %s: want 1 to 60 seconds\n",
				        optarg);
				return 1;
			}
			so.lease_ttl_s = v;
			break;
		}
		default: /* -h, or an option getopt refused */
			return cmdline_usage(c, usage_text);
		}
	}
	if (!cmdline_no_rest("shoal-scheduler", argc, argv))
		return 1;
	if (so.data_dir == NULL) {
		fprintf(stderr, "shoal-scheduler: %s needs --data-dir DIR\n", cmd);
		return 1;
	}
	if (strcmp(cmd, "init") == 0)
		return cmd_init(so.data_dir, force);
	if (strcmp(cmd, "run") != 0) {
		fprintf(stderr, "shoal-scheduler: unknown command \"%s\" (init or run)\n", cmd);
		return 1;
	}
	so.argv = argv;
	log_init("sched", level);
	if (sched_server_init(&srv, &so, &err) == -1) {
		shoal_log(LOG_ERR, "cannot start: %s", err.msg);
		return 1;
	}
	rc = sched_server_run(&srv);
	sched_server_free(&srv);
	return rc == 0 ? 0 : 1;
}
