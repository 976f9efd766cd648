"""DDL of the resource, version and search index tables, per SQL dialect; applied on start.

`resources` holds the current version of each resource (a deleted one as a marker row),
`resource_versions` the versions superseded since (history and vread read both). Index tables
hold rows for current, non-deleted resources only, so a search never has to filter versions.
`seq` is a global, monotonically increasing write counter: history order and stable paging.
"""

from __future__ import annotations

# 2: a current version's JSON is in `resources` only (its resource_versions row holds b"");
# schema 1 databases, with every version's JSON in resource_versions, are read as they are.
# 3: token values are stored once per distinct set (token_set_member); a resource has one
# idx_token_set row per token parameter. Older `idx_token` rows are converted (sql.py).
# 4: on SQLite, the index tables whose columns are all NOT NULL are WITHOUT ROWID tables keyed
# by their `_probe` columns: two B-trees a row instead of three (sql.py rebuilds older ones).
# 5: resource_versions holds superseded versions only, a create writes no row there (four
# B-trees fewer, one index on resources.seq more); sql.py drops the current versions' rows.
# 6: a narrowed reference parameter (Observation `patient`: `subject` to Patients) has no rows
# for what its base parameter's rows hold (search_parameters.narrowed); sql.py drops them.
# 7: a reference by absolute URL has no local type and id (indexing.parse_reference): another
# server's Patient/p1 is not this one's; sql.py makes such resources' reference rows again.
# 8: export_jobs, the Bulk Data export jobs (store/exports.py); no data changes.
# 9: auth_clients and auth_jti, the registered clients and their used assertion ids
# (store/clients.py); no data changes.
SCHEMA_VERSION = 9

INDEX_TABLES: dict[str, str] = {
    # set_id: the token values of one parameter of one resource, as a set shared by every
    # resource with the same values (trial data repeats its codes: 13 rows -> 4 per MADRS score)
    "idx_token_set": "param {text} NOT NULL, set_id {big} NOT NULL",
    "idx_string": "param {text} NOT NULL, value {text} NOT NULL",
    "idx_date": "param {text} NOT NULL, low {real} NOT NULL, high {real} NOT NULL",
    "idx_number": (
        "param {text} NOT NULL, value {real} NOT NULL, low {real} NOT NULL, "
        "high {real} NOT NULL, system {text}, code {text}"
    ),
    "idx_reference": "param {text} NOT NULL, target_type {text}, target_id {text}, url {text}",
    "idx_uri": "param {text} NOT NULL, value {text} NOT NULL",
}

# On SQLite, WITHOUT ROWID tables whose primary key is the `_probe` index (every column NOT
# NULL, as a primary key of such a table must be); their duplicate rows are skipped.
KEYED_ON_SQLITE = ("idx_token_set", "idx_string", "idx_date", "idx_uri")

# Index look-ups go from (type, param, value) to ids; `_probe` indexes lead with (type, id).
INDEX_LOOKUPS: dict[str, str] = {
    "idx_token_set": "resource_type, param, set_id",
    "idx_string": "resource_type, param, value",
    "idx_date": "resource_type, param, low, high",
    "idx_number": "resource_type, param, value",
    "idx_reference": "resource_type, param, target_id, target_type",
    "idx_uri": "resource_type, param, value",
}


def ddl(dialect: str) -> list[str]:
    """CREATE statements for `sqlite` or `postgresql`, idempotent."""
    text = "TEXT"
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    blob = "BYTEA" if dialect == "postgresql" else "BLOB"
    big = "BIGINT" if dialect == "postgresql" else "INTEGER"
    statements = [
        "CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS write_seq (id INTEGER PRIMARY KEY, value {big} NOT NULL)",
        # server-wide secrets shared by every node (e.g. the key sealing paging cursors)
        f"CREATE TABLE IF NOT EXISTS server_secret "
        f"(name {text} PRIMARY KEY, value {blob} NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS resources (
            resource_type {text} NOT NULL, id {text} NOT NULL, version_id INTEGER NOT NULL,
            last_updated {text} NOT NULL, deleted BOOLEAN NOT NULL, seq {big} NOT NULL,
            method {text} NOT NULL, data {blob} NOT NULL, PRIMARY KEY (resource_type, id))""",
        f"""CREATE TABLE IF NOT EXISTS resource_versions (
            resource_type {text} NOT NULL, id {text} NOT NULL, version_id INTEGER NOT NULL,
            last_updated {text} NOT NULL, deleted BOOLEAN NOT NULL, seq {big} NOT NULL,
            method {text} NOT NULL, data {blob} NOT NULL,
            PRIMARY KEY (resource_type, id, version_id))""",
        "CREATE INDEX IF NOT EXISTS resources_type_seq ON resources (resource_type, seq)",
        "CREATE INDEX IF NOT EXISTS resources_seq ON resources (seq)",  # history of all types
        "DROP INDEX IF EXISTS resources_type_updated",  # no query reads it: one B-tree less
        "CREATE INDEX IF NOT EXISTS versions_seq ON resource_versions (seq)",
        "CREATE INDEX IF NOT EXISTS versions_type_seq ON resource_versions (resource_type, seq)",
        # The members of each token set: set_id is a 64-bit hash of the members (as HAPI's
        # hashed token columns), n their position; searches go from a value to its sets.
        f"""CREATE TABLE IF NOT EXISTS token_set_member (
            set_id {big} NOT NULL, n INTEGER NOT NULL, system {text}, code {text}, text {text},
            PRIMARY KEY (set_id, n))""",
        "CREATE INDEX IF NOT EXISTS token_set_member_code ON token_set_member "
        "(code, system, set_id)",
        # Bulk Data export jobs: any node's worker claims one (owner, heartbeat) and writes
        # its files; `params` is the parsed kick-off as JSON, `manifest` the finished answer
        f"""CREATE TABLE IF NOT EXISTS export_jobs (
            id {text} PRIMARY KEY, status {text} NOT NULL, request {text} NOT NULL,
            params {blob} NOT NULL, transaction_time {text} NOT NULL, created {real} NOT NULL,
            owner {text}, heartbeat {real}, attempts INTEGER NOT NULL, progress {text},
            manifest {blob}, expires {real})""",
        "CREATE INDEX IF NOT EXISTS export_jobs_status ON export_jobs (status, created)",
        # SMART Backend Services clients (store/clients.py): jwks is a JWKS as JSON text
        f"""CREATE TABLE IF NOT EXISTS auth_clients (
            id {text} PRIMARY KEY, name {text} NOT NULL, role {text} NOT NULL, site {text},
            jwks {text}, jwks_url {text}, created {real} NOT NULL, revoked {real})""",
        f"""CREATE TABLE IF NOT EXISTS auth_jti (
            client_id {text} NOT NULL, jti {text} NOT NULL, expires {real} NOT NULL,
            PRIMARY KEY (client_id, jti))""",
    ]
    for table, columns in INDEX_TABLES.items():
        cols = columns.format(text=text, real=real, big=big)
        # Both indexes are covering for the search SQL (store/search.py): `_match` lists the
        # ids with a value, `_probe` checks one resource's values and serves deletes by owner.
        # Covering matters on SQLite without ANALYZE: it prefers a covering index over a
        # narrower but non-covering one, and would scan a whole type's rows.
        lookup = INDEX_LOOKUPS[table]
        probe = lookup.replace("resource_type, ", "resource_type, id, ", 1)
        keyed = dialect == "sqlite" and table in KEYED_ON_SQLITE
        key = f", PRIMARY KEY ({probe})) WITHOUT ROWID" if keyed else ")"
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {table} "
            f"(resource_type {text} NOT NULL, id {text} NOT NULL, {cols}{key}"
        )
        for old in ("lookup", "owner"):
            statements.append(f"DROP INDEX IF EXISTS {table}_{old}")
        statements.append(f"CREATE INDEX IF NOT EXISTS {table}_match ON {table} ({lookup}, id)")
        if not keyed:
            statements.append(f"CREATE INDEX IF NOT EXISTS {table}_probe ON {table} ({probe})")
    return statements
