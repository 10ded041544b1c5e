/* shoal-agent: one per node. Registers with the scheduler and reports this node's resources. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "cmdline.h"
#include "err.h"
#include "ingress.h"
#include "ingress_host.h"
#include "log.h"
#include "netnode.h"
#include "proxy.h"
#include "server.h"
#include "tasks.h"
#include "util.h"

static const char cleanup_usage[] =
    "usage: shoal-agent cleanup --data-dir DIR\n"
    "\n"
    "Remove what the agent made on this node: stop and remove every container under DIR\n"
    "(cgroups, mounts, state) and the task records; and the container network it made in\n"
    "this network namespace: bridge shoal0, its routes to other nodes (proto 84), leftover\n"
    "veths, the masquerade rule, the address leases. Images stay. Run it with the agent\n"
    "stopped, e.g. when taking a node out of the cluster for good.\n";

static const char proxy_usage[] =
    "usage: shoal-agent proxy --listen ADDR:PORT --backend ADDR:PORT [--backend ...]\n"
    "                         [--threads N] [--max-conns N] [--idle-timeout DUR]\n"
    "                         [--connect-timeout DUR] [--first-byte-timeout DUR]\n"
    "                         [--max-conns-per-backend N] [--queue-timeout DUR]\n"
    "                         [--log-level LEVEL] [--mode tcp|http]\n"
    "                         [--proxy-protocol v1|v2]\n"
    "\n"
    "Run the agent's proxy alone: a round-robin TCP balancer from ADDR:PORT to the\n"
    "backends. A backend that refuses, or times out without having answered for 10s, is\n"
    "skipped (the client is retried on another one) and benched for 2s. SIGTERM or SIGINT\n"
    "stops it.\n"
    "\n"
    "Options:\n"
    "  --listen ADDR:PORT      where to accept (ADDR empty = 0.0.0.0)\n"
    "  --backend ADDR:PORT     a backend (repeatable, in rotation order)\n"
    "  --threads N             worker threads (default: number of CPUs)\n"
    "  --max-conns N           refuse client connections beyond N (default: from the\n"
    "                          fd limit, 2 fds a client, 1/8 in reserve, at most 65536)\n"
    "  --idle-timeout DUR      close a connection idle for DUR (default 10m)\n"
    "  --connect-timeout DUR   give up a backend connect after DUR (default 1s)\n"
    "  --first-byte-timeout DUR  close a connection on which neither the client nor the\n"
    "                          backend sent a byte for DUR (default 30s)\n"
    "  --max-conns-per-backend N  at most N connections to each backend; clients beyond\n"
    "                          wait in a queue (default: unlimited)\n"
    "  --queue-timeout DUR     close a client that waited DUR for a slot (default 30s)\n"
    "  --log-level LEVEL       error, warn, notice, info (default) or debug\n"
    "  --mode http             balance each HTTP/1.x request and add X-Forwarded-For,\n"
    "                          X-Forwarded-Proto, Forwarded (default: tcp, each connection)\n"
    "  --proxy-protocol V      send a PROXY protocol header, v1 or v2, to the backend\n";

static const char usage_text[] =
    "usage: shoal-agent --scheduler HOST:PORT --token-file FILE --name NAME --address ADDR\n"
    "                   --data-dir DIR [--label KEY=VALUE ...] [options]\n"
    "       shoal-agent cleanup --data-dir DIR\n"
    "       shoal-agent proxy --listen ADDR:PORT --backend ADDR:PORT [--backend ...] [options]\n"
    "       shoal-agent ingress --data-dir DIR [options]\n"
    "\n"
    "Joins this node to a Shoal cluster: registers its CPUs and memory with the scheduler,\n"
    "runs the containers the scheduler assigns it, reports their state, and reconnects\n"
    "with back-off when the scheduler goes away. DIR holds the node's images and\n"
    "containers; containers keep running when the agent stops, and a restarted agent\n"
    "adopts them. So does the node's ingress proxy (shoal-agent ingress): published\n"
    "ports keep serving while the agent is down.\n"
    "\n"
    "Options:\n"
    "  --scheduler HOST:PORT  the scheduler (port 7100 by default on its side)\n"
    "                         several as H1:P,H2:P,...: tried in turn within the back-off,\n"
    "                         a follower's leader at once\n"
    "  --token-file FILE      the worker join token (DATA_DIR/worker.token on the scheduler)\n"
    "  --name NAME            this node's name, stable across restarts (its identity)\n"
    "  --address ADDR         this node's IPv4 address as other nodes reach it\n"
    "  --data-dir DIR         the agent's state directory; DIR/node.key (made at the first\n"
    "                         start, mode 0600) is the node's identity: its name only\n"
    "                         registers again with this key (lost: shoal node rm NAME)\n"
    "  --label KEY=VALUE      a node label for placement constraints (repeatable)\n"
    "  --image-dir DIR        import missing images from the OCI layouts in DIR, named\n"
    "                         NAME_TAG/ (shoal/web:1 -> DIR/web_1/); tried before a pull\n"
    "  --registry-auth FILE   registry credentials (auth.json as podman and skopeo write it)\n"
    "                         for pulling images whose reference names a registry host\n"
    "  --insecure-registry HOST:PORT  speak plain HTTP to this registry (repeatable)\n"
    "  --image-gc-after DUR   remove images no container uses once they have been in the\n"
    "                         store this long (default 1h; 0: never)\n"
    "  --cpus N               advertise at most N CPUs (default: what the node has)\n"
    "  --memory SIZE          advertise at most SIZE of memory (e.g. 2Gi)\n"
    "  --proxy-threads N      proxy worker threads (default: number of CPUs)\n"
    "  --proxy-max-conns N    client connections the proxy holds at most (default: from\n"
    "                         the fd limit, 2 fds a client, 1/8 in reserve, at most 65536)\n"
    "  --proxy-idle-timeout DUR  close a proxied connection idle this long (default 10m)\n"
    "  --proxy-first-byte-timeout DUR  close a proxied connection on which neither side\n"
    "                         sent a byte for DUR (default 30s)\n"
    "  --masquerade           masquerade containers' traffic leaving the cluster (needs\n"
    "                         iptables); traffic between containers is never NATed\n"
    "  --http ADDR:PORT       serve Prometheus /metrics here (default 127.0.0.1:7181;\n"
    "                         off: disables it); no token is asked: bind it where only\n"
    "                         the monitoring network reaches\n"
    "  --log-level LEVEL      error, warn, notice, info (default) or debug\n"
    "  -h, --help             this text\n"
    "\n"
    "Subcommands:\n"
    "  cleanup                remove the node's containers and task records (--help)\n"
    "  proxy                  run the round-robin TCP proxy alone (--help)\n"
    "  ingress                the node's proxy process the agent starts and re-adopts\n"
    "                         (--help)\n";

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
	if (ingress_stop(dir, &err) == -1) {
		fprintf(stderr, "shoal-agent cleanup: ingress: %s\n", err.msg);
		return 1;
	}
	printf("stopped the ingress\n");
	return 0;
}

static const char ingress_usage[] =
    "usage: shoal-agent ingress --data-dir DIR [--take-over] [--sync-fd FD] [--threads N]\n"
    "                           [--max-conns N] [--idle-timeout DUR]\n"
    "                           [--first-byte-timeout DUR] [--log-level LEVEL]\n"
    "\n"
    "The node's ingress proxy in a process of its own, as the agent starts it: it serves\n"
    "every published port, outlives the agent (a restarted agent finds it on the socket\n"
    "DIR/ingress.sock and feeds it the scheduler's endpoints), and keeps serving the last\n"
    "table while no agent is there. A port that cannot listen is retried (0.5s doubling to\n"
    "5s) and reported. --take-over makes it take the listening sockets of the ingress\n"
    "running on DIR (an agent upgrade): no listener closes in between. `shoal-agent\n"
    "cleanup` stops it; SIGTERM too.\n";

/* shoal-agent ingress ...: the node's proxy, started by the agent. */
static int
ingress_main(int argc, char **argv)
{
	struct ingress_host_options o = {.sync_fd = -1};
	int level = LOG_INFO;
	char *end;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		struct shoal_err err;
		int64_t *ms = NULL;
		long n = 0;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(ingress_usage, stdout);
			return 0;
		} else if (strcmp(a, "--take-over") == 0) {
			o.take_over = true;
			continue;
		} else if (v == NULL) {
			fprintf(stderr, "shoal-agent ingress: %s: missing value\n%s", a,
			        ingress_usage);
			return 1;
		}
		i++;
		if (strcmp(a, "--data-dir") == 0) {
			o.data_dir = v;
			continue;
		} else if (strcmp(a, "--log-level") == 0) {
			level = log_level_parse(v);
			if (level >= 0)
				continue;
		} else if (strcmp(a, "--idle-timeout") == 0) {
			ms = &o.po.idle_timeout_ms;
		} else if (strcmp(a, "--first-byte-timeout") == 0) {
			ms = &o.po.first_byte_timeout_ms;
		} else if (strcmp(a, "--sync-fd") == 0 || strcmp(a, "--threads") == 0 ||
		           strcmp(a, "--max-conns") == 0) {
			n = strtol(v, &end, 10);
			if (end != v && *end == '\0' && n >= 0 && n <= 10000000) {
				*(strcmp(a, "--sync-fd") == 0   ? &o.sync_fd
				  : strcmp(a, "--threads") == 0 ? &o.po.threads
				                                : &o.po.max_conns) = (int)n;
				continue;
			}
		} else {
			fprintf(stderr, "shoal-agent ingress: unexpected argument %s\n%s", a,
			        ingress_usage);
			return 1;
		}
		if (ms && util_parse_duration_ms(v, ms, &err) == 0)
			continue;
		fprintf(stderr, "shoal-agent ingress: %s %s: bad value\n", a, v);
		return 1;
	}
	if (o.data_dir == NULL) {
		fprintf(stderr, "shoal-agent ingress: needs --data-dir DIR\n");
		return 1;
	}
	log_init("ingress", level);
	return ingress_host_run(&o);
}

static void
proxy_on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	shoal_log(LOG_INFO, "%s: shutting down", strsignal((int)sig));
	event_base_loopexit(arg, NULL);
}

static void
proxy_on_failure(const struct proxy_failure *f, void *arg)
{
	(void)arg;
	shoal_log(LOG_WARNING, "proxy: backend %s: connect: %s (benched)", f->backend_addr,
	          strerror(f->code));
}

/* shoal-agent proxy ...: the proxy alone, one service named "proxy". */
static int
proxy_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"backend", required_argument, NULL, 'b'},
	    {"threads", required_argument, NULL, 't'},
	    {"max-conns", required_argument, NULL, 'm'},
	    {"idle-timeout", required_argument, NULL, 'i'},
	    {"connect-timeout", required_argument, NULL, 'c'},
	    {"first-byte-timeout", required_argument, NULL, 'f'},
	    {"max-conns-per-backend", required_argument, NULL, 'M'},
	    {"queue-timeout", required_argument, NULL, 'q'},
	    {"log-level", required_argument, NULL, 'L'},
	    {"mode", required_argument, NULL, 'H'},
	    {"proxy-protocol", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	struct proxy_options po = {0};
	struct proxy_service_spec svc = {.name = "proxy"};
	struct proxy_backend_spec *be = xcalloc((size_t)argc, sizeof(*be));
	char(*hosts)[64] = xcalloc((size_t)argc + 1, sizeof(*hosts));
	char(*ids)[80] = xcalloc((size_t)argc, sizeof(*ids));
	struct event_base *base = NULL;
	struct event *sig_term = NULL, *sig_int = NULL;
	struct proxy *p = NULL;
	struct shoal_err err;
	int c, level = LOG_INFO, rc = 1;
	const char *listen = NULL;
	char *end;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 'b': {
			struct proxy_backend_spec *b = &be[svc.nbackends];

			if (util_parse_hostport(optarg, hosts[svc.nbackends], sizeof(hosts[0]),
			                        &b->port, &err) == -1) {
				fprintf(stderr, "shoal-agent proxy: --backend %s\n", err.msg);
				goto out;
			}
			b->ip = hosts[svc.nbackends];
			snprintf(ids[svc.nbackends], sizeof(ids[0]), "%s", optarg);
			b->id = ids[svc.nbackends];
			svc.nbackends++;
			break;
		}
		case 't':
		case 'm': {
			long v = strtol(optarg, &end, 10);

			if (end == optarg || *end || v <= 0 || v > 1000000) {
				fprintf(stderr,
				        "shoal-agent proxy: --%s %s: want a positive number\n",
				        c == 't' ? "threads" : "max-conns", optarg);
				goto out;
			}
			*(c == 't' ? &po.threads : &po.max_conns) = (int)v;
			break;
		}
		case 'i':
		case 'c':
		case 'f':
			if (util_parse_duration_ms(optarg,
			                           c == 'i'   ? &po.idle_timeout_ms
			                           : c == 'c' ? &po.connect_timeout_ms
			                                      : &po.first_byte_timeout_ms,
			                           &err) == -1) {
				fprintf(stderr, "shoal-agent proxy: --%s: %s\n",
				        c == 'i'   ? "idle-timeout"
				        : c == 'c' ? "connect-timeout"
				                   : "first-byte-timeout",
				        err.msg);
				goto out;
			}
			break;
		case 'M': {
			long v = strtol(optarg, &end, 10);

			if (end == optarg || *end || v < 0 || v > 1000000) {
				fprintf(stderr,
				        "shoal-agent proxy: --max-conns-per-backend %s: want 0 "
				        "(unlimited) to 1000000\n",
				        optarg);
				goto out;
			}
			svc.max_conns_per_backend = (uint32_t)v;
			break;
		}
		case 'q':
			if (util_parse_duration_ms(optarg, &svc.queue_timeout_ms, &err) == -1 ||
			    svc.queue_timeout_ms <= 0) {
				fprintf(stderr,
				        "shoal-agent proxy: --queue-timeout %s: want 1ms or more\n",
				        optarg);
				goto out;
			}
			break;
		case 'L':
			level = cmdline_log_level("shoal-agent proxy", optarg);
			if (level < 0)
				goto out;
			break;
		case 'H':
		case 'P':
			if (c == 'H' &&
			    (strcmp(optarg, "tcp") == 0 || strcmp(optarg, "http") == 0)) {
				svc.http = strcmp(optarg, "http") == 0;
			} else if (c == 'P' &&
			           (strcmp(optarg, "v1") == 0 || strcmp(optarg, "v2") == 0)) {
				svc.protocol =
				    optarg[1] == '1' ? PROXY_PROTOCOL_V1 : PROXY_PROTOCOL_V2;
			} else {
				fprintf(stderr, "shoal-agent proxy: --%s %s: want %s\n",
				        c == 'H' ? "mode" : "proxy-protocol", optarg,
				        c == 'H' ? "tcp or http" : "v1 or v2");
				goto out;
			}
			break;
		default: /* -h, or an option getopt refused */
			rc = cmdline_usage(c, proxy_usage);
			goto out;
		}
	}
	if (!cmdline_no_rest("shoal-agent proxy", argc, argv))
		goto out;
	if (listen == NULL || svc.nbackends == 0) {
		fprintf(stderr, "shoal-agent proxy: needs --listen and at least one --backend\n");
		goto out;
	}
	if (util_parse_hostport(listen, hosts[argc], sizeof(hosts[0]), &svc.port, &err) == -1) {
		fprintf(stderr, "shoal-agent proxy: --listen %s\n", err.msg);
		goto out;
	}
	svc.listen_addr = hosts[argc][0] ? hosts[argc] : NULL;
	svc.backends = be;
	log_init("agent", level);
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	if (base == NULL) {
		shoal_log(LOG_ERR, "cannot create the event loop");
		goto out;
	}
	po.main_base = base;
	po.on_failure = proxy_on_failure;
	p = proxy_create(&po, &err);
	if (p == NULL) {
		shoal_log(LOG_ERR, "cannot start: %s", err.msg);
		goto out;
	}
	if (proxy_set_services(p, &svc, 1, &err) == -1) {
		shoal_log(LOG_ERR, "cannot start: %s", err.msg);
		goto out;
	}
	sig_term = evsignal_new(base, SIGTERM, proxy_on_signal, base);
	sig_int = evsignal_new(base, SIGINT, proxy_on_signal, base);
	event_add(sig_term, NULL);
	event_add(sig_int, NULL);
	shoal_log(LOG_INFO, "proxy: %zu backend%s, listening on port %u", svc.nbackends,
	          svc.nbackends == 1 ? "" : "s", (unsigned)proxy_listen_port(p, "proxy"));
	event_base_dispatch(base);
	rc = 0;
out:
	proxy_destroy(p);
	if (sig_term)
		event_free(sig_term);
	if (sig_int)
		event_free(sig_int);
	if (base)
		event_base_free(base);
	free(ids);
	free(hosts);
	free(be);
	return rc;
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
	    {"registry-auth", required_argument, NULL, 'R'},
	    {"insecure-registry", required_argument, NULL, 'K'},
	    {"image-gc-after", required_argument, NULL, 'G'},
	    {"cpus", required_argument, NULL, 'c'},
	    {"memory", required_argument, NULL, 'm'},
	    {"log-level", required_argument, NULL, 'L'},
	    {"masquerade", no_argument, NULL, 'M'},
	    {"proxy-threads", required_argument, NULL, 'T'},
	    {"proxy-max-conns", required_argument, NULL, 'X'},
	    {"proxy-idle-timeout", required_argument, NULL, 'D'},
	    {"proxy-first-byte-timeout", required_argument, NULL, 'F'},
	    {"http", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	struct agent_options o = {.http = "127.0.0.1:7181"};
	struct agent_server agent;
	struct shoal_err err;
	int c, level = LOG_INFO, rc;

	if (sodium_init() < 0) {
		fputs("shoal-agent: cannot initialise libsodium\n", stderr);
		return 1;
	}
	/* The proxy holds two fds per client: 1024 (the usual soft limit) ran out at ~510 idle
	 * clients. Raised before anything opens; a failure leaves the proxy's default
	 * max_conns sized to the limit there is. */
	{
		uint64_t nofile;

		if (util_raise_nofile(&nofile, &err) == -1)
			fprintf(stderr, "shoal-agent: %s (staying at %llu)\n", err.msg,
			        (unsigned long long)nofile);
	}
	if (argc >= 2 && strcmp(argv[1], "cleanup") == 0)
		return cleanup_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "proxy") == 0)
		return proxy_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "ingress") == 0)
		return ingress_main(argc - 1, argv + 1);
	o.labels = xcalloc((size_t)argc, sizeof(char *));
	o.insecure = xcalloc((size_t)argc, sizeof(char *));
	o.image_gc_after_ms = -1;
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
		case 'R':
			o.registry_auth = optarg;
			break;
		case 'G':
			if (strcmp(optarg, "0") == 0) {
				o.image_gc_after_ms = 0;
			} else if (util_parse_duration_ms(optarg, &o.image_gc_after_ms, &err) ==
			               -1 ||
			           o.image_gc_after_ms < 1000) {
				fprintf(stderr,
				        "shoal-agent: --image-gc-after %s: want 0 or 1s or more\n",
				        optarg);
				return 1;
			}
			break;
		case 'K': {
			size_t n = 0;
			while (o.insecure[n])
				n++;
			o.insecure[n] = optarg;
			break;
		}
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
		case 'T':
		case 'X': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (end == optarg || *end || v < 0 || v > (c == 'T' ? 256 : 10000000)) {
				fprintf(stderr, "shoal-agent: --%s %s: want a number\n",
				        c == 'T' ? "proxy-threads" : "proxy-max-conns", optarg);
				return 1;
			}
			if (c == 'T')
				o.proxy_threads = (int)v;
			else
				o.proxy_max_conns = (int)v;
			break;
		}
		case 'D':
			if (util_parse_duration_ms(optarg, &o.proxy_idle_timeout_ms, &err) == -1 ||
			    o.proxy_idle_timeout_ms < 1000) {
				fprintf(stderr,
				        "shoal-agent: --proxy-idle-timeout %s: want 1s or more\n",
				        optarg);
				return 1;
			}
			break;
		case 'F':
			if (util_parse_duration_ms(optarg, &o.proxy_first_byte_timeout_ms, &err) ==
			        -1 ||
			    o.proxy_first_byte_timeout_ms < 1000) {
				fprintf(
				    stderr,
				    "shoal-agent: --proxy-first-byte-timeout %s: want 1s or more\n",
				    optarg);
				return 1;
			}
			break;
		case 'H':
			o.http = optarg;
			break;
		case 'L':
			level = cmdline_log_level("shoal-agent", optarg);
			if (level < 0)
				return 1;
			break;
		default: /* -h, or an option getopt refused */
			return cmdline_usage(c, usage_text);
		}
	}
	if (!cmdline_no_rest("shoal-agent", argc, argv))
		return 1;
	if (!o.scheduler || !o.token_file || !o.name || !o.address || !o.data_dir) {
		fprintf(stderr, "shoal-agent: --scheduler, --token-file, --name, --address and "
		                "--data-dir are required (see --help)\n");
		return 1;
	}
	log_init("agent", level);
	if (agent_server_init(&agent, &o, &err) == -1) {
		shoal_log(LOG_ERR, "cannot start: %s", err.msg);
		free(o.labels);
		free(o.insecure);
		return 1;
	}
	free(o.labels);
	free(o.insecure);
	rc = agent_server_run(&agent);
	agent_server_free(&agent);
	return rc == 0 ? 0 : 1;
}
