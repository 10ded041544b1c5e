#include "version.h"

#include "shoal_version.h"

const char *
version_string(void)
{
	return SHOAL_VERSION;
}
