#include "store.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "err.h"
#include "store_etcd.h"
#include "util.h"

/* The etcd back end's result r of a write: one refused by the fence means another scheduler
 * leads, and this one must stop acting at once, not at its next lease check. */
static int
via_etcd(struct store *s, int r, struct shoal_err *err)
{
	if (r == -1 && err->code == SHOAL_ENOTLEADER && s->fenced)
		s->fenced(err->msg, s->fenced_arg);
	return r;
}

int
store_open_etcd(struct store *s, struct etcd *e, const char *prefix, struct shoal_err *err)
{
	memset(s, 0, sizeof(*s));
	s->etcd = xcalloc(1, sizeof(*s->etcd));
	if (store_etcd_open(s->etcd, e, prefix, err) == -1) {
		free(s->etcd);
		s->etcd = NULL;
		return -1;
	}
	return 0;
}

/* synchronous=FULL: in WAL mode NORMAL skips the fsync at commit, so a power loss could undo a
 * commit the CLI was already told about ("service created"); FULL syncs the WAL at every
 * commit, once per Apply and once per reconcile pass, not per row. */
static const char schema[] = "PRAGMA journal_mode=WAL;"
                             "PRAGMA synchronous=FULL;"
                             /* 32 MiB of page cache: the id index of a million
                              * tasks, written in random order, stays in memory */
                             "PRAGMA cache_size=-32768;"
                             "PRAGMA foreign_keys=ON;"
                             "CREATE TABLE IF NOT EXISTS meta ("
                             "  key TEXT PRIMARY KEY,"
                             "  value TEXT NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS nodes ("
                             "  id TEXT PRIMARY KEY,"
                             "  name TEXT NOT NULL UNIQUE,"
                             "  address TEXT NOT NULL,"
                             "  labels TEXT NOT NULL DEFAULT '',"
                             "  availability TEXT NOT NULL DEFAULT 'active',"
                             "  cpu_millis INTEGER NOT NULL DEFAULT 0,"
                             "  memory_bytes INTEGER NOT NULL DEFAULT 0,"
                             "  subnet_index INTEGER NOT NULL UNIQUE,"
                             "  created_ms INTEGER NOT NULL,"
                             "  node_key TEXT NOT NULL DEFAULT '');"
                             "CREATE TABLE IF NOT EXISTS services ("
                             "  name TEXT PRIMARY KEY,"
                             "  spec_json TEXT NOT NULL,"
                             "  prev_spec_json TEXT,"
                             "  version INTEGER NOT NULL,"
                             "  prev_version INTEGER NOT NULL DEFAULT 0,"
                             "  created_ms INTEGER NOT NULL,"
                             "  updated_ms INTEGER NOT NULL,"
                             "  removed INTEGER NOT NULL DEFAULT 0,"
                             "  update_state TEXT);"
                             "CREATE TABLE IF NOT EXISTS tasks ("
                             "  id TEXT PRIMARY KEY,"
                             "  name TEXT NOT NULL,"
                             "  service TEXT NOT NULL,"
                             "  slot INTEGER NOT NULL,"
                             "  version INTEGER NOT NULL,"
                             "  node_id TEXT NOT NULL DEFAULT '',"
                             "  desired INTEGER NOT NULL,"
                             "  role INTEGER NOT NULL DEFAULT 0,"
                             "  restarts INTEGER NOT NULL DEFAULT 0,"
                             "  created_ms INTEGER NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS pins ("
                             "  service TEXT NOT NULL,"
                             "  version INTEGER NOT NULL,"
                             "  digest TEXT NOT NULL,"
                             "  PRIMARY KEY(service, version));";

/*
 * Columns added after a release, for stores created before them: {table, column, definition}.
 * A store that has the column already (created with it, or migrated) is left alone.
 */
static const char *const migrations[][3] = {
    /* The node's Ed25519 public key (hex), "" until bound: nodes of an older store get theirs
     * bound at their next registration (trust on first use). */
    {"nodes", "node_key", "TEXT NOT NULL DEFAULT ''"},
    /* Labels set by `shoal node update`, kept apart from the agent's (which it re-sends at
     * every registration): merged over them in memory. */
    {"nodes", "admin_labels", "TEXT NOT NULL DEFAULT ''"},
    /* The update's state as a type and its reason (store_service): rows with only the text
     * are converted by update_rows_sql. */
    {"services", "update_kind", "INTEGER"},
    {"services", "update_message", "TEXT"},
};

/* Rows whose update state is only text (written before update_kind existed): the type read
 * from the text's prefix, as the scheduler used to parse it back, numbered as enum
 * update_state (scheduler/update-t.h; store_update_test checks every text the scheduler
 * writes), and the reason after ": " for the states that have one. */
static const char update_rows_sql[] =
    "UPDATE services SET update_kind = CASE"
    "  WHEN update_state LIKE 'updating%' THEN 1"
    "  WHEN update_state LIKE 'paused%' THEN 2"
    "  WHEN update_state LIKE 'rolling back%' THEN 3"
    "  WHEN update_state LIKE 'rolled back%' THEN 4"
    "  WHEN update_state = 'completed' THEN 5 ELSE 0 END,"
    " update_message = CASE"
    "  WHEN (update_state LIKE 'paused%' OR update_state LIKE 'rolling back%'"
    "        OR update_state LIKE 'rolled back%') AND instr(update_state, ': ') > 0"
    "  THEN substr(update_state, instr(update_state, ': ') + 2) END"
    " WHERE update_kind IS NULL AND update_state IS NOT NULL";

static int
has_column(sqlite3 *db, const char *table, const char *column)
{
	char *sql =
	    sqlite3_mprintf("SELECT 1 FROM pragma_table_info(%Q) WHERE name=%Q", table, column);
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (sql != NULL && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		int r = sqlite3_step(st);
		rc = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_finalize(st);
	sqlite3_free(sql);
	return rc;
}

static int
migrate(sqlite3 *db, struct shoal_err *err)
{
	char *msg = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(migrations); i++) {
		int have = has_column(db, migrations[i][0], migrations[i][1]);
		char *sql;
		int rc;

		if (have == 1)
			continue;
		if (have == -1)
			return err_set(err, 0, "store: columns of %s: %s", migrations[i][0],
			               sqlite3_errmsg(db));
		sql = sqlite3_mprintf("ALTER TABLE %s ADD COLUMN %s %s", migrations[i][0],
		                      migrations[i][1], migrations[i][2]);
		rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
		sqlite3_free(sql);
		if (rc != SQLITE_OK) {
			err_set(err, 0, "store: add %s.%s: %s", migrations[i][0], migrations[i][1],
			        msg ? msg : "?");
			sqlite3_free(msg);
			return -1;
		}
	}
	if (sqlite3_exec(db, update_rows_sql, NULL, NULL, &msg) != SQLITE_OK) {
		err_set(err, 0, "store: convert update states: %s", msg ? msg : "?");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int
db_err(struct store *s, struct shoal_err *err, const char *what)
{
	return err_set(err, 0, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

int
store_open(struct store *s, const char *path, struct shoal_err *err)
{
	char *msg = NULL;

	memset(s, 0, sizeof(*s));
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		err_set(err, 0, "store: open %s: %s", path,
		        s->db ? sqlite3_errmsg(s->db) : "out of memory");
		store_close(s);
		return -1;
	}
	/* Only this scheduler writes its database; a lock held by another process (a second
	 * scheduler on the same data dir, an sqlite3 shell) is an error to report, not a reason
	 * to stall every agent's heartbeat on the loop for seconds. */
	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	if (sqlite3_exec(s->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		err_set(err, 0, "store: schema in %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		store_close(s);
		return -1;
	}
	if (migrate(s->db, err) == -1) {
		store_close(s);
		return -1;
	}
	return 0;
}

void
store_close(struct store *s)
{
	if (s->etcd) {
		store_etcd_close(s->etcd);
		free(s->etcd);
		memset(s, 0, sizeof(*s));
		return;
	}
	if (s->in_tx)
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	s->in_tx = 0;
	sqlite3_finalize(s->task_put);
	sqlite3_finalize(s->task_delete);
	s->task_put = s->task_delete = NULL;
	if (s->db)
		sqlite3_close(s->db);
	s->db = NULL;
}

int
store_node_put(struct store *s, const struct store_node *n, struct shoal_err *err)
{
	if (s->etcd)
		return via_etcd(s, store_etcd_node_put(s->etcd, n, err), err);
	static const char sql[] =
	    "INSERT INTO nodes(id, name, address, labels, availability, cpu_millis,"
	    " memory_bytes, subnet_index, created_ms, node_key, admin_labels)"
	    " VALUES(?,?,?,?,?,?,?,?,?,?,?)"
	    " ON CONFLICT(id) DO UPDATE SET name=excluded.name, address=excluded.address,"
	    " labels=excluded.labels, availability=excluded.availability,"
	    " cpu_millis=excluded.cpu_millis, memory_bytes=excluded.memory_bytes,"
	    " subnet_index=excluded.subnet_index, node_key=excluded.node_key,"
	    " admin_labels=excluded.admin_labels";
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare node put");
	sqlite3_bind_text(st, 1, n->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, n->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, n->address ? n->address : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, n->labels ? n->labels : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, n->availability ? n->availability : "active", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, n->cpu_millis);
	sqlite3_bind_int64(st, 7, n->memory_bytes);
	sqlite3_bind_int(st, 8, n->subnet_index);
	sqlite3_bind_int64(st, 9, n->created_ms);
	sqlite3_bind_text(st, 10, n->node_key ? n->node_key : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, n->admin_labels ? n->admin_labels : "", -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "node put");
	return 0;
}

static char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return xstrdup(t ? (const char *)t : "");
}

int
store_node_each(struct store *s, void (*fn)(const struct store_node *n, void *arg), void *arg,
                struct shoal_err *err)
{
	if (s->etcd)
		return store_etcd_node_each(s->etcd, fn, arg, err);
	static const char sql[] =
	    "SELECT id, name, address, labels, availability, cpu_millis,"
	    " memory_bytes, subnet_index, created_ms, node_key, admin_labels FROM nodes"
	    " ORDER BY name";
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare node list");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_node n = {
		    .id = col_text(st, 0),
		    .name = col_text(st, 1),
		    .address = col_text(st, 2),
		    .labels = col_text(st, 3),
		    .availability = col_text(st, 4),
		    .cpu_millis = sqlite3_column_int64(st, 5),
		    .memory_bytes = sqlite3_column_int64(st, 6),
		    .subnet_index = sqlite3_column_int(st, 7),
		    .created_ms = sqlite3_column_int64(st, 8),
		    .node_key = col_text(st, 9),
		    .admin_labels = col_text(st, 10),
		};
		fn(&n, arg);
		store_node_clear(&n);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "node list");
	return 0;
}

int
store_node_delete(struct store *s, const char *id, struct shoal_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (s->etcd)
		return via_etcd(s, store_etcd_node_delete(s->etcd, id, err), err);
	if (sqlite3_prepare_v2(s->db, "DELETE FROM nodes WHERE id=?", -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare node delete");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "node delete");
	return 0;
}

void
store_node_clear(struct store_node *n)
{
	free(n->id);
	free(n->name);
	free(n->address);
	free(n->labels);
	free(n->admin_labels);
	free(n->availability);
	free(n->node_key);
	memset(n, 0, sizeof(*n));
}

char *
store_meta_get(struct store *s, const char *key, struct shoal_err *err)
{
	sqlite3_stmt *st = NULL;
	char *v = NULL;
	int rc;

	if (s->etcd)
		return store_etcd_meta_get(s->etcd, key, err);
	if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key=?", -1, &st, NULL) !=
	    SQLITE_OK) {
		db_err(s, err, "prepare meta get");
		return NULL;
	}
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		v = col_text(st, 0);
	else if (rc != SQLITE_DONE)
		db_err(s, err, "meta get");
	else
		err_set(err, 0, "store: no %s", key);
	sqlite3_finalize(st);
	return v;
}

int
store_meta_put(struct store *s, const char *key, const char *value, struct shoal_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (s->etcd)
		return via_etcd(s, store_etcd_meta_put(s->etcd, key, value, err), err);
	if (sqlite3_prepare_v2(s->db,
	                       "INSERT INTO meta(key, value) VALUES(?,?)"
	                       " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare meta put");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "meta put");
	return 0;
}

int
store_tx_begin(struct store *s, struct shoal_err *err)
{
	if (s->etcd) {
		s->in_tx = 1;
		return store_etcd_tx_begin(s->etcd, err);
	}
	if (s->in_tx)
		return 0;
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(s, err, "begin");
	s->in_tx = 1;
	return 0;
}

/* After a failed write or commit: end the transaction if SQLite left it open, so the next
 * BEGIN does not fail with "cannot start a transaction within a transaction" for ever. */
static void
rollback_open_tx(struct store *s)
{
	s->in_tx = 0;
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int
store_tx_commit(struct store *s, struct shoal_err *err)
{
	if (s->etcd) {
		s->in_tx = 0;
		return via_etcd(s, store_etcd_tx_commit(s->etcd, err), err);
	}
	if (!s->in_tx)
		return 0;
	s->in_tx = 0;
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_err(s, err, "commit");
		rollback_open_tx(s);
		return -1;
	}
	return 0;
}

int
store_service_put_now(struct store *s, const struct store_service *rows, size_t n,
                      struct shoal_err *err)
{
	if (s->etcd)
		return via_etcd(s, store_etcd_service_put_now(s->etcd, rows, n, err), err);
	/* The open batch first, on its own: this write must neither wait for it nor be undone
	 * with it. A batch that cannot commit means the store fails, and so does this. */
	if (store_tx_commit(s, err) == -1)
		return -1;
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(s, err, "begin");
	for (size_t i = 0; i < n; i++)
		if (store_service_put(s, &rows[i], err) == -1)
			goto fail;
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_err(s, err, "commit");
		goto fail;
	}
	return 0;
fail:
	rollback_open_tx(s);
	return -1;
}

static void
bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

int
store_service_put(struct store *s, const struct store_service *sv, struct shoal_err *err)
{
	if (s->etcd)
		return via_etcd(s, store_etcd_service_put(s->etcd, sv, err), err);
	static const char sql[] =
	    "INSERT INTO services(name, spec_json, prev_spec_json, version, created_ms,"
	    " updated_ms, removed, update_state, prev_version, update_kind, update_message)"
	    " VALUES(?,?,?,?,?,?,?,?,?,?,?)"
	    " ON CONFLICT(name) DO UPDATE SET spec_json=excluded.spec_json,"
	    " prev_spec_json=excluded.prev_spec_json, version=excluded.version,"
	    " updated_ms=excluded.updated_ms, removed=excluded.removed,"
	    " update_state=excluded.update_state, prev_version=excluded.prev_version,"
	    " update_kind=excluded.update_kind, update_message=excluded.update_message";
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare service put");
	sqlite3_bind_text(st, 1, sv->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sv->spec_json, -1, SQLITE_STATIC);
	bind_text_or_null(st, 3, sv->prev_spec_json);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)sv->version);
	sqlite3_bind_int64(st, 5, sv->created_ms);
	sqlite3_bind_int64(st, 6, sv->updated_ms);
	sqlite3_bind_int(st, 7, sv->removed);
	bind_text_or_null(st, 8, sv->update_state);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)sv->prev_version);
	if (sv->update_typed)
		sqlite3_bind_int(st, 10, sv->update_kind);
	else
		sqlite3_bind_null(st, 10);
	bind_text_or_null(st, 11, sv->update_message);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "service put");
	return 0;
}

int
store_service_delete(struct store *s, const char *name, struct shoal_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (s->etcd)
		return via_etcd(s, store_etcd_service_delete(s->etcd, name, err), err);
	if (sqlite3_prepare_v2(s->db, "DELETE FROM services WHERE name=?", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_err(s, err, "prepare service delete");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "service delete");
	/* A service made again under this name starts at version 1: no pin of the old one
	 * may apply to it. */
	if (sqlite3_prepare_v2(s->db, "DELETE FROM pins WHERE service=?", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_err(s, err, "prepare pin delete");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "pin delete");
	return 0;
}

int
store_pin_put(struct store *s, const char *service, uint64_t version, const char *digest,
              uint64_t keep, struct shoal_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (s->etcd)
		return via_etcd(s, store_etcd_pin_put(s->etcd, service, version, digest, keep, err),
		                err);
	if (sqlite3_prepare_v2(s->db,
	                       "INSERT OR IGNORE INTO pins(service, version, digest) VALUES(?,?,?)",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare pin put");
	sqlite3_bind_text(st, 1, service, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)version);
	sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "pin put");
	if (sqlite3_prepare_v2(s->db,
	                       "DELETE FROM pins WHERE service=? AND version<>? AND version<>?", -1,
	                       &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare pin prune");
	sqlite3_bind_text(st, 1, service, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)version);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)keep);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "pin prune");
	return 0;
}

int
store_pin_each(struct store *s,
               void (*fn)(const char *service, uint64_t version, const char *digest, void *arg),
               void *arg, struct shoal_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (s->etcd)
		return store_etcd_pin_each(s->etcd, fn, arg, err);
	if (sqlite3_prepare_v2(s->db, "SELECT service, version, digest FROM pins ORDER BY version",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare pin list");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn((const char *)sqlite3_column_text(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
		   (const char *)sqlite3_column_text(st, 2), arg);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "pin list");
	return 0;
}

static char *
col_text_or_null(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? xstrdup((const char *)t) : NULL;
}

int
store_service_each(struct store *s, void (*fn)(const struct store_service *sv, void *arg),
                   void *arg, struct shoal_err *err)
{
	if (s->etcd)
		return store_etcd_service_each(s->etcd, fn, arg, err);
	static const char sql[] = "SELECT name, spec_json, prev_spec_json, version, created_ms,"
	                          " updated_ms, removed, update_state, prev_version, update_kind,"
	                          " update_message FROM services"
	                          " ORDER BY name";
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare service list");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_service sv = {
		    .name = col_text(st, 0),
		    .spec_json = col_text(st, 1),
		    .prev_spec_json = col_text_or_null(st, 2),
		    .version = (uint64_t)sqlite3_column_int64(st, 3),
		    .created_ms = sqlite3_column_int64(st, 4),
		    .updated_ms = sqlite3_column_int64(st, 5),
		    .removed = sqlite3_column_int(st, 6),
		    .update_state = col_text_or_null(st, 7),
		    .prev_version = (uint64_t)sqlite3_column_int64(st, 8),
		    .update_typed = sqlite3_column_type(st, 9) != SQLITE_NULL,
		    .update_kind = sqlite3_column_int(st, 9),
		    .update_message = col_text_or_null(st, 10),
		};
		fn(&sv, arg);
		free(sv.name);
		free(sv.spec_json);
		free(sv.prev_spec_json);
		free(sv.update_state);
		free(sv.update_message);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "service list");
	return 0;
}

int
store_task_put(struct store *s, const struct store_task *t, struct shoal_err *err)
{
	if (s->etcd)
		return via_etcd(s, store_etcd_task_put(s->etcd, t, err), err);
	static const char sql[] =
	    "INSERT INTO tasks(id, name, service, slot, version, node_id, desired, role,"
	    " restarts, created_ms) VALUES(?,?,?,?,?,?,?,?,?,?)"
	    " ON CONFLICT(id) DO UPDATE SET node_id=excluded.node_id,"
	    " desired=excluded.desired, role=excluded.role, restarts=excluded.restarts";
	sqlite3_stmt *st;
	int rc;

	if (s->task_put == NULL &&
	    sqlite3_prepare_v2(s->db, sql, -1, &s->task_put, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare task put");
	st = s->task_put;
	sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, t->service, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, t->slot);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)t->version);
	sqlite3_bind_text(st, 6, t->node_id ? t->node_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, t->desired);
	sqlite3_bind_int(st, 8, t->role);
	sqlite3_bind_int64(st, 9, t->restarts);
	sqlite3_bind_int64(st, 10, t->created_ms);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "task put");
	return 0;
}

int
store_task_delete(struct store *s, const char *id, struct shoal_err *err)
{
	int rc;

	if (s->etcd)
		return via_etcd(s, store_etcd_task_delete(s->etcd, id, err), err);
	if (s->task_delete == NULL && sqlite3_prepare_v2(s->db, "DELETE FROM tasks WHERE id=?", -1,
	                                                 &s->task_delete, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare task delete");
	sqlite3_bind_text(s->task_delete, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s->task_delete);
	sqlite3_reset(s->task_delete);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "task delete");
	return 0;
}

int
store_task_each(struct store *s, void (*fn)(const struct store_task *t, void *arg), void *arg,
                struct shoal_err *err)
{
	if (s->etcd)
		return store_etcd_task_each(s->etcd, fn, arg, err);
	static const char sql[] =
	    "SELECT id, name, service, slot, version, node_id, desired, role,"
	    " restarts, created_ms FROM tasks ORDER BY service, slot, created_ms";
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(s, err, "prepare task list");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_task t = {
		    .id = col_text(st, 0),
		    .name = col_text(st, 1),
		    .service = col_text(st, 2),
		    .slot = (uint32_t)sqlite3_column_int64(st, 3),
		    .version = (uint64_t)sqlite3_column_int64(st, 4),
		    .node_id = col_text(st, 5),
		    .desired = sqlite3_column_int(st, 6),
		    .role = sqlite3_column_int(st, 7),
		    .restarts = (uint32_t)sqlite3_column_int64(st, 8),
		    .created_ms = sqlite3_column_int64(st, 9),
		};
		fn(&t, arg);
		free(t.id);
		free(t.name);
		free(t.service);
		free(t.node_id);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, err, "task list");
	return 0;
}
