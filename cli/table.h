#ifndef SHOAL_CLI_TABLE_H
#define SHOAL_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

/* A text table whose columns are as wide as their widest cell (docker ps style). */
struct table {
	size_t ncols;
	size_t nrows; /* including the header row */
	char **cells; /* nrows * ncols, owned */
};

void table_init(struct table *t, size_t ncols, const char *const *header);
/* Append a row of ncols cells (copied). */
void table_add(struct table *t, const char *const *row);
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);

#endif
