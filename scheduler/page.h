#ifndef SHOAL_SCHEDULER_PAGE_H
#define SHOAL_SCHEDULER_PAGE_H

#include <stddef.h>

/*
 * The status page the scheduler serves at / (http.c): one HTML document with its CSS and
 * script inline, no external asset, so it works on a cluster with no way out. The script
 * polls /api/state every second and /api/events?since=SEQ, and draws nodes, services,
 * rollouts, tasks, per-backend proxy traffic and the event stream; every value is set as
 * text, never as markup.
 */
extern const char page_html[];
extern const size_t page_html_len;

#endif
