#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void
table_init(struct table *t, size_t ncols, const char *const *header)
{
	t->ncols = ncols;
	t->nrows = 0;
	t->cells = NULL;
	table_add(t, header);
}

void
table_add(struct table *t, const char *const *row)
{
	t->cells = xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
	for (size_t c = 0; c < t->ncols; c++)
		t->cells[t->nrows * t->ncols + c] = xstrdup(row[c] ? row[c] : "");
	t->nrows++;
}

void
table_print(const struct table *t, FILE *f)
{
	size_t *w = xcalloc(t->ncols, sizeof(*w));

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t n = strlen(t->cells[r * t->ncols + c]);
			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			if (c + 1 == t->ncols)
				fprintf(f, "%s\n", s);
			else
				fprintf(f, "%-*s   ", (int)w[c], s);
		}
	}
	free(w);
}

void
table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = 0;
}
