#ifndef SHOAL_SCHEDULER_STORE_ETCD_ROW_H
#define SHOAL_SCHEDULER_STORE_ETCD_ROW_H

#include "scheduler/store-t.h"

struct shoal_err;

/*
 * The etcd store's values: one compact JSON object per row, of the SQLite columns, so that
 * `etcdctl get --prefix /shoal/` is readable and no second .proto is needed. Pure functions
 * (unit-tested and fuzzed). Encoders return malloc'd JSON; decoders fill a row whose strings
 * the caller frees (store_node_clear, store_etcd_row_service_clear, store_etcd_row_task_clear)
 * and return -1 with err for a malformed value.
 */

char *store_etcd_row_node_encode(const struct store_node *n);
int store_etcd_row_node_decode(const char *json, struct store_node *n, struct shoal_err *err);
char *store_etcd_row_service_encode(const struct store_service *sv);
int store_etcd_row_service_decode(const char *json, struct store_service *sv,
                                  struct shoal_err *err);
void store_etcd_row_service_clear(struct store_service *sv);
char *store_etcd_row_task_encode(const struct store_task *t);
int store_etcd_row_task_decode(const char *json, struct store_task *t, struct shoal_err *err);
void store_etcd_row_task_clear(struct store_task *t);

#endif
