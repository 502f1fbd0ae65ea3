"""Small probes for scripts/bootstrap.sh, run with the venv's Python (psycopg and redis come from requirements.txt).

    services.py pg-probe URL        exit 0: the server answers; 1: nothing answers there; 2: it answers but refuses us
    services.py pg-create-db URL    create the URL's database if it is missing
    services.py redis-probe URL     same exit codes as pg-probe, with PING
    services.py with-port URL PORT [USER]
                                    print URL on 127.0.0.1:PORT without password or query (for a private instance)
    services.py redis-db URL N      print URL with database N
    services.py free-port START     print the first port from START that nothing listens on
    services.py secret              print a new SECRET_KEY
"""
import secrets
import socket
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

TIMEOUT = 3


def _libpq_url(url):
    # Django's env.db accepts postgres://, postgresql://, pgsql://, psql://; libpq only the first two.
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme in {"pgsql", "psql", "postgis", "postgres"} else url


def _tcp_answers(host, port):
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            return True
    except OSError:
        return False


def _pg_connect(url, dbname=None):
    import psycopg

    kwargs = {"connect_timeout": TIMEOUT, "autocommit": True}
    if dbname:
        kwargs["dbname"] = dbname
    return psycopg.connect(_libpq_url(url), **kwargs)


def pg_probe(url):
    import psycopg

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if not host.startswith("/") and not _tcp_answers(host, parts.port or 5432):
        return 1
    last_error = None
    for dbname in (None, "postgres", "template1"):  # the URL's database may not exist yet
        try:
            _pg_connect(url, dbname).close()
            return 0
        except psycopg.OperationalError as exc:
            last_error = exc
    message = str(last_error).strip()
    if host.startswith("/") and ("No such file" in message or "Connection refused" in message):
        return 1
    # libpq's last line is the server's reason, e.g. FATAL:  password authentication failed for user "postgres"
    reason = " ".join(message.splitlines()[-1].split())
    print(reason[reason.find("FATAL:"):] if "FATAL:" in reason else reason, file=sys.stderr)
    return 2


def pg_create_db(url):
    import psycopg
    from psycopg import sql

    name = unquote(urlsplit(url).path.lstrip("/")) or "postgres"
    try:
        _pg_connect(url).close()
        return 0
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    for maintenance_db in ("postgres", "template1"):
        try:
            conn = _pg_connect(url, maintenance_db)
            break
        except psycopg.OperationalError:
            continue
    else:
        print("postgres: cannot connect to a maintenance database to create the database", file=sys.stderr)
        return 1
    with conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"postgres: created database {name}")
    return 0


def redis_probe(url):
    import redis

    parts = urlsplit(url)
    if parts.scheme in {"redis", "rediss"} and not _tcp_answers(parts.hostname or "localhost", parts.port or 6379):
        return 1
    try:
        redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT).ping()
        return 0
    except redis.exceptions.RedisError as exc:
        if parts.scheme == "unix" and isinstance(exc, redis.exceptions.ConnectionError):
            return 1
        print(f"PING fails: {exc}", file=sys.stderr)
        return 2


def with_port(url, port, user=None):
    parts = urlsplit(url)
    user = user or parts.username or ""
    netloc = (user + "@" if user else "") + f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))  # no sslmode etc.: the private one is plain


def redis_db(url, db):
    parts = urlsplit(url)
    if parts.scheme == "unix":  # unix:///path?db=N
        query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("db="))
        return urlunsplit((parts.scheme, parts.netloc, parts.path, (query + "&" if query else "") + f"db={db}", ""))
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def free_port(start):
    for port in range(start, start + 200):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _tcp_answers("127.0.0.1", port):
            return port
    raise SystemExit(f"no free port in {start}..{start + 199}")


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "pg-probe":
        return pg_probe(args[0])
    if command == "pg-create-db":
        return pg_create_db(args[0])
    if command == "redis-probe":
        return redis_probe(args[0])
    if command == "with-port":
        print(with_port(args[0], int(args[1]), *args[2:3]))
    elif command == "redis-db":
        print(redis_db(args[0], int(args[1])))
    elif command == "free-port":
        print(free_port(int(args[0])))
    elif command == "secret":
        print(secrets.token_urlsafe(50))
    else:
        print(__doc__, file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
