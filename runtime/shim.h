#ifndef SHOAL_RUNTIME_SHIM_H
#define SHOAL_RUNTIME_SHIM_H

struct container;
struct container_attach;
struct shoal_err;

/*
 * The shim's life with one created container, in the process that is to be its shim: the
 * body of shoal-shim (exec'd, or forked by shim_server, for a large or threaded starter such
 * as the agent) and of the shim shim_fork forks off a small single-threaded starter
 * (shoalrt). It spawns the container, tells the starter "exec happened" or why not over
 * sync_fd, relays the container's output to ROOT/containers/<id>/log (rotated to log.1 at
 * CONTAINER_LOG_MAX) and to attach[0] and attach[1] (stdout, stderr; -1: not attached), waits
 * for it, records exit code, signal, OOM kill and times in state.json, removes the cgroup, and
 * for --rm everything else.
 *
 * The caller has set up the process: its own session, /dev/null on 0-2, no other fd of the
 * starter's. Takes c and the three fds (sync_fd may be -1). Returns the process's exit status:
 * 0, or 1 when the container could not be started (recorded, and told to the starter).
 */
int shim_serve(struct container *c, int sync_fd, const int attach[2]);

/*
 * A container_shim_launcher (container.h) for a caller that is small, single-threaded and
 * short-lived (shoalrt): fork it, and serve c in the child, which sets itself up as an exec'd
 * shoal-shim --daemon would be (own session, default signals, /dev/null on 0-2, no other fd
 * of the caller's, "shoal-shim" in ps). No exec of the shim and no reload of state.json on
 * the start's path. Never from a threaded caller: the child runs the whole shim.
 */
int shim_fork(struct container *c, int sync, const struct container_attach *a,
              struct shoal_err *err);

/*
 * A request to a shim server: serve container id under root. Sent over the server's
 * SOCK_SEQPACKET socket with the starter's end of the sync socket, then the attached stdout
 * and stderr if the flags say so, as SCM_RIGHTS.
 */
struct shim_request {
	char root[4096];
	char id[65];
	unsigned char has_stdout, has_stderr;
};

/*
 * shoal-shim --server: the body of a long-lived, single-threaded shim maker for a threaded
 * starter (the agent, through container_start), spawned once by it with fd its end of a
 * SOCK_SEQPACKET socketpair. Says hello (one byte), then keeps one spare shim forked ahead:
 * the spare takes the next shim_request, tells us (we fork the next spare), loads the
 * container and serves it as a shim_fork'ed shim does. A start so costs neither an exec of
 * shoal-shim nor a fork (measured: ~2 ms of the agent's ~11 ms start-to-execve on the
 * project's 2-core machine, bench/runtime.sh). The shims are our children, never the
 * starter's (we reap them as they exit), and outlive us. Returns once the starter is gone
 * (EOF), or 1 when a spare died without a word.
 */
int shim_server(int fd);

#endif
