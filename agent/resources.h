#ifndef SHOAL_AGENT_RESOURCES_H
#define SHOAL_AGENT_RESOURCES_H

#include <stdint.h>

/*
 * What this node can offer and what it uses. Capacity is the machine's CPUs and memory,
 * lowered to the agent's own cgroup limits when those are smaller (an agent in a container
 * or a systemd slice must not promise more than it may use).
 */
struct resources {
	int64_t cpu_millis;
	int64_t memory_bytes;
};

/* Per-call state for CPU usage: the previous /proc/stat sample. */
struct resources_cpu_sample {
	uint64_t busy, total;
};

/* Capacity from /proc and the cgroup files under cgroot (normally "/sys/fs/cgroup"). */
void resources_capacity(const char *cgroot, struct resources *out);

/* Usage since the previous sample (CPU) and now (memory). */
void resources_usage(struct resources_cpu_sample *prev, int64_t ncpu_millis, struct resources *out);

/*
 * Parse a cgroup limit file's text: v1 "9223372036854771712" (no limit) or a number, v2
 * "max" or a number; returns -1 for no limit.
 */
int64_t resources_parse_limit(const char *text);

/* Parse v2 cpu.max "QUOTA PERIOD" or "max PERIOD" into millicpus; -1 for no limit. */
int64_t resources_parse_cpu_max(const char *text);

#endif
