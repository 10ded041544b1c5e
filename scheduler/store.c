#include "store.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "err.h"
#include "util.h"

static const char schema[] = "PRAGMA journal_mode=WAL;"
                             "PRAGMA synchronous=NORMAL;"
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
                             "  created_ms INTEGER NOT NULL);";

static int
db_err(struct store *s, struct shoal_err *err, const char *what)
{
	return err_set(err, 0, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

int
store_open(struct store *s, const char *path, struct shoal_err *err)
{
	char *msg = NULL;

	s->db = NULL;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		err_set(err, 0, "store: open %s: %s", path,
		        s->db ? sqlite3_errmsg(s->db) : "out of memory");
		store_close(s);
		return -1;
	}
	sqlite3_busy_timeout(s->db, 2000);
	if (sqlite3_exec(s->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		err_set(err, 0, "store: schema in %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		store_close(s);
		return -1;
	}
	return 0;
}

void
store_close(struct store *s)
{
	if (s->db)
		sqlite3_close(s->db);
	s->db = NULL;
}

int
store_node_put(struct store *s, const struct store_node *n, struct shoal_err *err)
{
	static const char sql[] =
	    "INSERT INTO nodes(id, name, address, labels, availability, cpu_millis,"
	    " memory_bytes, subnet_index, created_ms) VALUES(?,?,?,?,?,?,?,?,?)"
	    " ON CONFLICT(id) DO UPDATE SET name=excluded.name, address=excluded.address,"
	    " labels=excluded.labels, availability=excluded.availability,"
	    " cpu_millis=excluded.cpu_millis, memory_bytes=excluded.memory_bytes,"
	    " subnet_index=excluded.subnet_index";
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
	static const char sql[] =
	    "SELECT id, name, address, labels, availability, cpu_millis,"
	    " memory_bytes, subnet_index, created_ms FROM nodes ORDER BY name";
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
	free(n->availability);
	memset(n, 0, sizeof(*n));
}

char *
store_meta_get(struct store *s, const char *key, struct shoal_err *err)
{
	sqlite3_stmt *st = NULL;
	char *v = NULL;
	int rc;

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
