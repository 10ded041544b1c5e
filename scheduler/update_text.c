#include "update_text.h"

#include <stdlib.h>
#include <string.h>

#include "service-t.h"
#include "util.h"

static void
set_message(struct update *u, const char *msg)
{
	free(u->message);
	u->message = msg ? xstrdup(msg) : NULL;
}

char *
update_text(const struct service *svc)
{
	const struct update *u = &svc->update;

	switch (u->state) {
	case UPDATE_NONE:
		return xstrdup("");
	case UPDATE_UPDATING:
		return xasprintf("updating %u/%u", u->done, u->total);
	case UPDATE_ROLLING_BACK:
		return xasprintf("rolling back %u/%u%s%s", u->done, u->total,
		                 u->message ? ": " : "", u->message ? u->message : "");
	case UPDATE_PAUSED:
		return xasprintf("paused: %s", u->message ? u->message : "");
	case UPDATE_ROLLED_BACK:
		return xasprintf("rolled back%s%s", u->message ? ": " : "",
		                 u->message ? u->message : "");
	case UPDATE_COMPLETED:
		return xstrdup("completed");
	}
	return xstrdup("");
}

char *
update_status(const struct service *svc)
{
	char *text, *s;

	if (svc->pending_reason == NULL)
		return update_text(svc);
	/* A rollout that is over says only what keeps tasks pending now. */
	if (svc->update.state == UPDATE_NONE || svc->update.state == UPDATE_COMPLETED)
		return xasprintf("waiting: %s", svc->pending_reason);
	text = update_text(svc);
	s = xasprintf("%s, waiting: %s", text, svc->pending_reason);
	free(text);
	return s;
}

void
update_restore(struct service *svc, const char *text)
{
	struct update *u = &svc->update;
	const char *colon;

	if (text == NULL || text[0] == '\0')
		return;
	colon = strstr(text, ": ");
	if (strncmp(text, "updating", 8) == 0) {
		u->state = UPDATE_UPDATING;
	} else if (strncmp(text, "rolling back", 12) == 0) {
		u->state = UPDATE_ROLLING_BACK;
		set_message(u, colon ? colon + 2 : NULL);
	} else if (strncmp(text, "paused", 6) == 0) {
		u->state = UPDATE_PAUSED;
		set_message(u, colon ? colon + 2 : NULL);
	} else if (strncmp(text, "rolled back", 11) == 0) {
		u->state = UPDATE_ROLLED_BACK;
		set_message(u, colon ? colon + 2 : NULL);
	} else if (strcmp(text, "completed") == 0) {
		u->state = UPDATE_COMPLETED;
	}
}
