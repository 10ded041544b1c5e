#ifndef SHOAL_COMMON_VERSION_H
#define SHOAL_COMMON_VERSION_H

/* This build's version: `git describe` of the tree it was built from (Makefile), e.g.
 * "v0.3-12-g8e77333", or the Makefile's fallback outside a git checkout. */
const char *version_string(void);

#endif
