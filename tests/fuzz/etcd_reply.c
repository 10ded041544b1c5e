/* libFuzzer target for the etcd gateway client's reply parsers and the etcd store's row
 * decoders: any bytes, as a unary reply or as a watch stream in two pieces, parse or fail
 * cleanly with everything freed (a hostile or broken endpoint must not crash the scheduler). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "scheduler/etcd.h"
#include "scheduler/store_etcd.h"
#include "scheduler/store_etcd_row.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
on_obj(json_t *obj, void *arg)
{
	struct etcd_watch_msg m;
	struct shoal_err err;

	(void)arg;
	if (etcd_parse_watch(obj, &m, &err) == -1)
		return -1;
	for (size_t i = 0; i < m.n; i++)
		SHOAL_ASSERT(m.events[i].kv.key != NULL && m.events[i].kv.value != NULL);
	etcd_watch_msg_clear(&m);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	struct shoal_err err;
	struct etcd_stream st = {.max = 1 << 16};
	char *text = xmalloc(size + 1);

	if (j != NULL && etcd_parse_status(200, j, &err) == 0) {
		struct etcd_range r;
		struct etcd_txn_result t;
		int64_t id, ttl;

		if (etcd_parse_range(j, &r, &err) == 0) {
			for (size_t i = 0; i < r.n; i++)
				SHOAL_ASSERT(strlen(r.kvs[i].value) <= r.kvs[i].value_len);
			etcd_range_clear(&r);
		}
		if (etcd_parse_txn(j, &t, &err) == 0)
			etcd_txn_result_clear(&t);
		etcd_parse_lease(j, &id, &ttl, &err);
	}
	json_decref(j);
	if (etcd_stream_feed(&st, (const char *)data, size / 2, on_obj, NULL, &err) == 0)
		etcd_stream_feed(&st, (const char *)data + size / 2, size - size / 2, on_obj, NULL,
		                 &err);
	etcd_stream_clear(&st);

	memcpy(text, data, size);
	text[size] = '\0';
	{
		struct store_node n;
		struct store_service sv;
		struct store_task t;

		if (store_etcd_row_node_decode(text, &n, &err) == 0)
			store_node_clear(&n);
		if (store_etcd_row_service_decode(text, &sv, &err) == 0)
			store_etcd_row_service_clear(&sv);
		if (store_etcd_row_task_decode(text, &t, &err) == 0)
			store_etcd_row_task_clear(&t);
	}
	free(text);
	return 0;
}
