#include "vipproxy.h"

#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "shoal.pb-c.h"
#include "util.h"

void
vipproxy_append(struct vipproxy_specs *vs, const Shoal__Endpoints *ep,
                struct proxy_service_spec **svcs, size_t *n, const char *(*refuse)(const char *ip))
{
	size_t add = 0;

	memset(vs, 0, sizeof(*vs));
	for (size_t i = 0; i < ep->n_names; i++)
		if (ep->names[i]->vip && ep->names[i]->vip[0])
			add += ep->names[i]->n_vip_ports;
	if (add == 0)
		return;
	*svcs = xrealloc(*svcs, (*n + add) * sizeof(**svcs));
	vs->bes = xcalloc(add, sizeof(*vs->bes));
	for (size_t i = 0; i < ep->n_names; i++) {
		const Shoal__ServiceName *sn = ep->names[i];
		if (sn->vip == NULL || sn->vip[0] == '\0')
			continue;
		for (size_t p = 0; p < sn->n_vip_ports; p++) {
			struct proxy_service_spec *s = &(*svcs)[(*n)++];
			struct proxy_backend_spec *b = xcalloc(sn->n_tasks + 1, sizeof(*b));
			size_t nb = 0;
			if (sn->vip_ports[p] == 0 || sn->vip_ports[p] > 65535) {
				(*n)--;
				free(b);
				continue;
			}
			for (size_t k = 0; k < sn->n_tasks; k++) {
				if (refuse && refuse(sn->tasks[k]->ip))
					continue;
				b[nb].id = sn->tasks[k]->task_id;
				b[nb].ip = sn->tasks[k]->ip;
				b[nb].port = (uint16_t)sn->vip_ports[p];
				nb++;
			}
			memset(s, 0, sizeof(*s));
			s->name = sn->name;
			s->listen_addr = sn->vip;
			s->port = (uint16_t)sn->vip_ports[p];
			s->backends = b;
			s->nbackends = nb;
			vs->bes[vs->n++] = b;
		}
	}
}

void
vipproxy_specs_free(struct vipproxy_specs *vs)
{
	for (size_t i = 0; i < vs->n; i++)
		free(vs->bes[i]);
	free(vs->bes);
	memset(vs, 0, sizeof(*vs));
}
