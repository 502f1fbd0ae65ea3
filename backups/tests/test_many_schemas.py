"""django-tenants #943: one pg_dump of thousands of tenant schemas needs a lock per table, more than the shared
lock table holds (max_locks_per_transaction x max_connections), and fails with "out of shared memory". On a
scratch cluster with a tiny lock table, a plain pg_dump of 600 tables fails where the full backup's dump (batches of
schemas within the lock budget, one snapshot) succeeds and restores to the same row counts."""
import pytest

from backups import pg, runner
from backups.tests.cluster import ScratchCluster, run

SCHEMAS, TABLES = 60, 10


@pytest.fixture
def tiny_lock_table():
    cluster = ScratchCluster("max_locks_per_transaction = 10\nmax_connections = 20\n").start()
    yield cluster
    cluster.stop()


def test_a_full_dump_of_many_schemas_stays_within_the_lock_table(tiny_lock_table, tmp_path):
    cluster = tiny_lock_table
    for s in range(SCHEMAS):
        cluster.sql(f"CREATE SCHEMA t_{s:03d};" + "".join(
            f"CREATE TABLE t_{s:03d}.table_{t} (id serial PRIMARY KEY, value text);"
            f"INSERT INTO t_{s:03d}.table_{t} (value) SELECT 'row ' || n FROM generate_series(1, {t + s % 3}) n;"
            for t in range(TABLES)))
    database = cluster.database()

    plain = run([pg.tool("pg_dump", database), "-Fc", "-f", str(tmp_path / "plain.dump"), "-d", "postgres"],
                env=database.env())
    assert plain.returncode != 0 and "max_locks_per_transaction" in plain.stderr

    dumps, schemas = runner.dump_database(database, tmp_path, lambda *args, **kwargs: None)
    assert len(dumps) > 2 and dumps[0]["schemas"] == ["public"]
    assert sum(len(d["schemas"]) for d in dumps) == SCHEMAS + 1
    assert schemas["t_059"]["tables"]["table_9"] == 9 + 59 % 3

    target = pg.create_database(database, "restored")
    runner.restore_full_database(target, tmp_path, {"database": {"dumps": dumps}})
    problems = [problem for schema, expected in schemas.items()
                for problem in runner.compare_schema(target, schema, expected)]
    assert problems == []
