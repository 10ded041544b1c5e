#ifndef SHOAL_CLI_EXEC_H
#define SHOAL_CLI_EXEC_H

struct cli_ctx;

extern const char exec_usage[];
extern const char version_usage[];

/* `shoal exec TASK -- CMD...`: exits with CMD's status. */
int exec_cmd(struct cli_ctx *ctx, int argc, char **argv);
/* `shoal version`: this client's and the scheduler's versions. */
int version_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
