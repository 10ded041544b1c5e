/* libFuzzer target for the image reference parser: any bytes parse or fail cleanly with
 * everything freed; what parses is printable, re-parses to the same reference (normalising
 * is idempotent), and its familiar form does too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "reference.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);
	struct reference r, back, fam;
	struct shoal_err err;

	memcpy(s, data, size);
	s[size] = '\0';
	if (reference_parse(s, &r, &err) == 0) {
		char *full = reference_string(&r);
		char *familiar = reference_familiar(&r);
		char *again;

		for (const char *p = full; *p; p++)
			SHOAL_ASSERT(*p > 0x20 && *p < 0x7f && *p != '\\');
		/* The name may become a path: no "..", no empty component (a tag may hold "..":
		 * it is only ever a key). */
		char *name = reference_name(&r);
		SHOAL_ASSERT(strstr(name, "..") == NULL && strstr(name, "//") == NULL);
		free(name);
		SHOAL_ASSERT(reference_parse(full, &back, &err) == 0);
		again = reference_string(&back);
		SHOAL_ASSERT(strcmp(again, full) == 0);
		free(again);
		SHOAL_ASSERT(reference_parse(familiar, &fam, &err) == 0);
		again = reference_string(&fam);
		SHOAL_ASSERT(strcmp(again, full) == 0);
		free(again);
		reference_free(&back);
		reference_free(&fam);
		free(full);
		free(familiar);
		reference_free(&r);
	} else {
		SHOAL_ASSERT(r.domain == NULL && r.path == NULL && r.tag == NULL);
		SHOAL_ASSERT(strncmp(err.msg, "invalid reference \"", 19) == 0);
	}
	free(s);
	return 0;
}
