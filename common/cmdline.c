#include "cmdline.h"

#include <getopt.h>
#include <stdio.h>

#include "log.h"

int
cmdline_log_level(const char *prog, const char *value)
{
	int level = log_level_parse(value);

	if (level < 0)
		fprintf(stderr, "%s: unknown log level %s\n", prog, value);
	return level;
}

int
cmdline_usage(int c, const char *usage)
{
	fputs(usage, c == 'h' ? stdout : stderr);
	return c == 'h' ? 0 : 1;
}

bool
cmdline_no_rest(const char *prog, int argc, char **argv)
{
	if (optind == argc)
		return true;
	fprintf(stderr, "%s: unexpected argument %s\n", prog, argv[optind]);
	return false;
}
