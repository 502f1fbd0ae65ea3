#!/usr/bin/env bash
# Sets up a development machine for Switchboard. Idempotent: a second run reuses everything.
#
#   scripts/bootstrap.sh           everything `make run` needs: venv, .env, Postgres, Redis, var/runtime.env,
#                                  migrations, static files, the tenant schema pool, the first platform admin
#   scripts/bootstrap.sh --services  venv, .env, Postgres, Redis, var/runtime.env (what `make bench` needs)
#   scripts/bootstrap.sh --test    --services plus Chromium for the browser tests (what `make test` needs)
#   scripts/bootstrap.sh --stop    stop the private Postgres/Redis under var/ if they run
#
# Postgres and Redis: the server named by DATABASE_URL / REDIS_URL (environment, else .env, else the defaults)
# is used when it answers. Otherwise a private instance is started under var/postgres or var/redis, installing
# the Debian package first when the binaries are missing and we are root. The URLs in use are written to
# var/runtime.env, which the Makefile exports into every command it runs afterwards.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MODE=${1:-setup}
case $MODE in
    setup | --setup) MODE=setup ;;
    --services) MODE=services ;;
    --test) MODE=test ;;
    --stop) MODE=stop ;;
    *) echo "usage: $0 [--services|--test|--stop]" >&2; exit 64 ;;
esac

VAR=$ROOT/var
VENV=$ROOT/.venv
PY=$VENV/bin/python
PG_DIR=$VAR/postgres
REDIS_DIR=$VAR/redis
PG_PRIVATE_PORT=54329
REDIS_PRIVATE_PORT=63799
DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchboard
DEFAULT_REDIS_URL=redis://127.0.0.1:6379/0

say() { printf '%s\n' "$*"; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=
apt_install() {
    is_root || return 1
    command -v apt-get >/dev/null || return 1
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$APT_UPDATED" ]; then
        say "apt: apt-get update"
        apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    say "apt: installing $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

mkdir -p "$VAR"
# One bootstrap at a time per checkout (make run and make test may start together).
# The daemons started below must not inherit this descriptor (9>&-), or they would hold the lock forever.
exec 9>"$VAR/bootstrap.lock"
if ! flock -n 9; then
    say "bootstrap: waiting for another bootstrap of this checkout to finish"
    flock -w 900 9 || die "gave up waiting for var/bootstrap.lock"
fi

# --- Python --------------------------------------------------------------------------------------------
setup_venv() {
    local python=${PYTHON:-python3}
    if [ ! -x "$PY" ] || ! "$PY" -c 'import sys' 2>/dev/null; then
        say "python: creating .venv with $($python --version 2>&1)"
        command -v "$python" >/dev/null || die "$python not found: install Python 3.11 (or set PYTHON=/path/to/python3)"
        rm -rf "$VENV"
        if ! "$python" -m venv "$VENV" >"$VAR/venv.log" 2>&1; then
            # Debian ships venv's ensurepip separately.
            rm -rf "$VENV"
            apt_install python3-venv || { cat "$VAR/venv.log" >&2; die "could not create .venv"; }
            "$python" -m venv "$VENV"
        fi
        rm -f "$VAR/requirements.stamp"
    fi
    local stamp
    stamp="$(sha256sum requirements.txt | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.version.split()[0])')"
    if [ "$(cat "$VAR/requirements.stamp" 2>/dev/null)" != "$stamp" ]; then
        say "python: installing requirements.txt into .venv"
        # pip's own noise about index folders in the machine's pip.conf that lack a package is filtered out.
        local noise='is ignored: it is neither a file nor a directory'
        if ! "$PY" -m pip install --quiet --disable-pip-version-check -r requirements.txt >"$VAR/pip.log" 2>&1; then
            grep -v "$noise" "$VAR/pip.log" >&2 || true
            die "pip install -r requirements.txt failed (full log: var/pip.log)"
        fi
        grep -v "$noise" "$VAR/pip.log" || true
        printf '%s\n' "$stamp" >"$VAR/requirements.stamp"
    fi
}

# neonize identifies media types with python-magic, which needs the system's libmagic.
ensure_libmagic() {
    ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' && return 0
    if is_root && apt_install libmagic1; then say "libmagic: installed libmagic1"; return 0; fi
    say "libmagic: libmagic1 is missing (Debian: sudo apt-get install libmagic1); the neonize provider needs it"
}

setup_env_file() {
    [ -f .env ] && return 0
    say "config: creating .env for development from .env.example (DEBUG=true, new SECRET_KEY, the simulator as WhatsApp)"
    local secret
    secret=$("$PY" scripts/services.py secret)
    # The simulator: a first try needs no phone (pages say plainly that WhatsApp is simulated); set
    # WHATSAPP_PROVIDER=neonize in .env to link a real phone.
    sed -e "s|^# *DEBUG=.*|DEBUG=true|" -e "s|^# *SECRET_KEY=.*|SECRET_KEY=$secret|" \
        -e "s|^# *WHATSAPP_PROVIDER=.*|WHATSAPP_PROVIDER=simulator|" .env.example >.env.tmp
    mv .env.tmp .env
}

# --- Postgres ------------------------------------------------------------------------------------------
pg_bindir() {
    local wanted=
    [ -f "$PG_DIR/data/PG_VERSION" ] && wanted=$(cat "$PG_DIR/data/PG_VERSION")
    if [ -n "$wanted" ] && [ -x "/usr/lib/postgresql/$wanted/bin/pg_ctl" ]; then
        echo "/usr/lib/postgresql/$wanted/bin"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    fi
}

# initdb refuses to run as root: as root, the private cluster belongs to the postgres system user.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_private_running() {
    [ -f "$PG_DIR/data/PG_VERSION" ] && [ -f "$PG_DIR/port" ] && [ -n "${PG_BIN:-}" ] &&
        as_pg "$PG_BIN/pg_ctl" status -D "$PG_DIR/data" >/dev/null 2>&1
}

# Point-in-time recovery for the private cluster only (a server bootstrap did not start is never reconfigured): WAL
# segments are archived into BACKUP_WAL_SPOOL_DIR (a copy and a rename; at least every BACKUP_ARCHIVE_TIMEOUT_SECONDS,
# 30), from where the `wal` worker ships them compressed and encrypted to the backup storage (backups/wal.py, whose archive_settings() writes the
# same lines for scratch clusters). The settings live in a file of their own that postgresql.conf includes.
configure_wal_archiving() {
    local spool timeout conf="$PG_DIR/data/switchboard-archive.conf"
    spool=$(scripts/env-get BACKUP_WAL_SPOOL_DIR "$VAR/wal-spool")
    timeout=$(scripts/env-get BACKUP_ARCHIVE_TIMEOUT_SECONDS 30)
    mkdir -p "$spool"
    if is_root; then chown postgres:postgres "$spool"; fi
    chmod 700 "$spool"
    cat >"$conf" <<EOF
# Written by scripts/bootstrap.sh: WAL archiving for point-in-time recovery (README: Operations).
wal_level = replica
archive_mode = on
archive_timeout = $timeout
archive_command = 'test -f "$spool/%f" && cmp -s "%p" "$spool/%f" || (cp "%p" "$spool/%f.tmp" && mv "$spool/%f.tmp" "$spool/%f")'
EOF
    if is_root; then chown postgres:postgres "$conf"; fi
    grep -q "switchboard-archive.conf" "$PG_DIR/data/postgresql.conf" ||
        echo "include_if_exists = 'switchboard-archive.conf'" >>"$PG_DIR/data/postgresql.conf"
}

start_private_postgres() {
    PG_BIN=$(pg_bindir)
    if [ -z "$PG_BIN" ]; then
        is_root || die "PostgreSQL is not installed and no server answers at $1.
    Install it (Debian: sudo apt-get install postgresql), or set DATABASE_URL to a running server."
        apt_install postgresql || die "could not install postgresql with apt-get"
        PG_BIN=$(pg_bindir)
        [ -n "$PG_BIN" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"
    fi
    if is_root; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        runuser -u postgres -- test -x "$VAR" ||
            die "the postgres system user cannot reach $VAR (a parent folder is private); clone the project somewhere it can read, or set DATABASE_URL to a running server"
    fi

    if pg_private_running; then
        configure_wal_archiving  # archive_mode takes effect at the cluster's next start, archive_timeout now
        as_pg "$PG_BIN/pg_ctl" reload -D "$PG_DIR/data" >/dev/null 2>&1 || true
        return
    fi
    mkdir -p "$PG_DIR"
    is_root && chown postgres:postgres "$PG_DIR"
    chmod 700 "$PG_DIR"
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        say "postgres: creating a private cluster in var/postgres ($("$PG_BIN/postgres" --version))"
        as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 --no-locale \
            >"$VAR/postgres-initdb.log" 2>&1 || { cat "$VAR/postgres-initdb.log" >&2; die "initdb failed"; }
        cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# Private development instance started by scripts/bootstrap.sh
listen_addresses = '127.0.0.1'
synchronous_commit = off
EOF
    fi
    configure_wal_archiving
    local port
    port=$(cat "$PG_DIR/port" 2>/dev/null || echo "$PG_PRIVATE_PORT")
    if ! "$PY" scripts/services.py free-port "$port" | grep -qx "$port"; then
        port=$("$PY" scripts/services.py free-port "$PG_PRIVATE_PORT")
    fi
    as_pg "$PG_BIN/pg_ctl" start -D "$PG_DIR/data" -l "$PG_DIR/server.log" -o "-p $port -k '$PG_DIR'" -w -t 60 >/dev/null 9>&- ||
        { tail -n 20 "$PG_DIR/server.log" >&2; die "could not start the private Postgres (log: var/postgres/server.log)"; }
    echo "$port" >"$PG_DIR/port"
    say "postgres: started private instance in var/postgres on port $port"
}

# The configured server is used when it answers. One that answers but refuses us is an error when DATABASE_URL
# was set; when it was not, it is most likely the cluster that `apt-get install postgresql` started (password
# auth on 127.0.0.1), and the private instance is used instead.
resolve_postgres() {
    local configured url rc=0
    configured=$(scripts/env-get DATABASE_URL "")
    url=${configured:-$DEFAULT_DATABASE_URL}
    "$PY" scripts/services.py pg-probe "$url" 2>"$VAR/probe.err" || rc=$?
    if [ "$rc" -eq 0 ]; then
        say "postgres: using $(redact "$url")"
    elif [ "$rc" -eq 2 ] && [ -n "$configured" ]; then
        die "postgres: the server at $(redact "$url") answers but refuses us: $(tail -n 1 "$VAR/probe.err")
    Fix DATABASE_URL, or unset it to use a private instance under var/postgres."
    else
        if [ "$rc" -eq 2 ]; then
            say "postgres: the server at $(redact "$url") refuses us ($(tail -n 1 "$VAR/probe.err")); DATABASE_URL is not set"
        else
            say "postgres: nothing answers at $(redact "$url")"
        fi
        PG_BIN=$(pg_bindir)
        start_private_postgres "$(redact "$url")"
        # initdb made "postgres" the superuser; trust auth, so no password.
        url=$("$PY" scripts/services.py with-port "$url" "$(cat "$PG_DIR/port")" postgres)
        say "postgres: using $url"
    fi
    "$PY" scripts/services.py pg-create-db "$url"
    DATABASE_URL=$url
}

# --- Redis ---------------------------------------------------------------------------------------------
redis_private_running() {
    [ -f "$REDIS_DIR/redis.pid" ] && [ -f "$REDIS_DIR/port" ] &&
        kill -0 "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null &&
        "$PY" scripts/services.py redis-probe "redis://127.0.0.1:$(cat "$REDIS_DIR/port")/0" >/dev/null 2>&1
}

start_private_redis() {
    local server
    server=$(command -v redis-server || true)
    if [ -z "$server" ]; then
        is_root || die "Redis is not installed and no server answers at $1.
    Install it (Debian: sudo apt-get install redis-server), or set REDIS_URL to a running server."
        apt_install redis-server || die "could not install redis-server with apt-get"
        server=$(command -v redis-server || echo /usr/bin/redis-server)
        [ -x "$server" ] || die "redis-server installed but not found"
    fi
    redis_private_running && return
    mkdir -p "$REDIS_DIR"
    local port
    port=$(cat "$REDIS_DIR/port" 2>/dev/null || echo "$REDIS_PRIVATE_PORT")
    if ! "$PY" scripts/services.py free-port "$port" | grep -qx "$port"; then
        port=$("$PY" scripts/services.py free-port "$REDIS_PRIVATE_PORT")
    fi
    rm -f "$REDIS_DIR/redis.pid"
    "$server" --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$REDIS_DIR" \
        --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --save 60 1 --appendonly no >/dev/null 9>&-
    echo "$port" >"$REDIS_DIR/port"
    local i
    for i in $(seq 1 50); do
        "$PY" scripts/services.py redis-probe "redis://127.0.0.1:$port/0" >/dev/null 2>&1 && break
        [ "$i" -eq 50 ] && { tail -n 20 "$REDIS_DIR/redis.log" >&2; die "private Redis did not answer (log: var/redis/redis.log)"; }
        sleep 0.2
    done
    say "redis: started private instance in var/redis on port $port"
}

resolve_redis() {
    local configured url rc=0
    configured=$(scripts/env-get REDIS_URL "")
    url=${configured:-$DEFAULT_REDIS_URL}
    "$PY" scripts/services.py redis-probe "$url" 2>"$VAR/probe.err" || rc=$?
    if [ "$rc" -eq 0 ]; then
        say "redis: using $(redact "$url")"
    elif [ "$rc" -eq 2 ] && [ -n "$configured" ]; then
        die "redis: the server at $(redact "$url") answers but refuses us: $(tail -n 1 "$VAR/probe.err")
    Fix REDIS_URL, or unset it to use a private instance under var/redis."
    else
        if [ "$rc" -eq 2 ]; then
            say "redis: the server at $(redact "$url") refuses us ($(tail -n 1 "$VAR/probe.err")); REDIS_URL is not set"
        else
            say "redis: nothing answers at $(redact "$url")"
        fi
        start_private_redis "$(redact "$url")"
        url=$("$PY" scripts/services.py with-port "$url" "$(cat "$REDIS_DIR/port")")
        say "redis: using $url"
    fi
    REDIS_URL=$url
}

redact() { printf '%s' "$1" | sed -E 's#://([^:/@]*):[^@/]*@#://\1:***@#'; }

write_runtime_env() {
    {
        echo "# Written by scripts/bootstrap.sh: the database and Redis in use. The Makefile exports these."
        echo "DATABASE_URL=$DATABASE_URL"
        echo "REDIS_URL=$REDIS_URL"
    } >"$VAR/runtime.env.tmp"
    mv "$VAR/runtime.env.tmp" "$VAR/runtime.env"
    export DATABASE_URL REDIS_URL
    # WhiteNoise warns about a missing STATIC_ROOT in every process, tests included.
    mkdir -p "$(scripts/env-get STATIC_ROOT "$VAR/staticfiles")" "$(scripts/env-get MEDIA_ROOT "$VAR/media")"
}

# --- Chromium for the browser tests ----------------------------------------------------------------------
ensure_chromium() {
    [ -x /usr/bin/chromium ] && return
    if is_root && apt_install chromium; then
        say "chromium: installed /usr/bin/chromium"
    else
        say "chromium: /usr/bin/chromium is missing (Debian: sudo apt-get install chromium); browser tests will fail"
    fi
}

stop_private() {
    PG_BIN=$(pg_bindir)
    if pg_private_running; then
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DIR/data" -m fast -w >/dev/null
        say "postgres: stopped private instance in var/postgres"
    fi
    if [ -f "$REDIS_DIR/redis.pid" ] && kill -0 "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null; then
        local pid
        pid=$(cat "$REDIS_DIR/redis.pid")
        kill "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        say "redis: stopped private instance in var/redis"
    fi
}

if [ "$MODE" = stop ]; then
    stop_private
    exit 0
fi

setup_venv
ensure_libmagic
setup_env_file
resolve_postgres
resolve_redis
write_runtime_env

if [ "$MODE" = test ]; then
    ensure_chromium
fi
if [ "$MODE" != setup ]; then
    exit 0
fi

# migrate_schemas --shared, migrate_schemas, collectstatic, fill_tenant_pool, ensure_platform_admin (it prints
# the first admin's credentials on the first run only), in one Python process.
"$PY" scripts/django_setup.py
