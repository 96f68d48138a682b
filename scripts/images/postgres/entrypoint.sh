#!/bin/sh
# Initialises the cluster on first start, then runs postgres in the foreground.
set -eu
bin=/usr/lib/postgresql/15/bin
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:-postgres}" > "$pw"
  chown postgres "$pw"
  su postgres -s /bin/sh -c "$bin/initdb -D '$PGDATA' -U '$user' --pwfile='$pw' -A scram-sha-256 --no-sync" >/dev/null
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\"" | su postgres -s /bin/sh -c "$bin/postgres --single -D '$PGDATA' postgres" >/dev/null
  fi
fi
exec su postgres -s /bin/sh -c "exec $bin/postgres -D '$PGDATA' -c listen_addresses='*' -c fsync=off"
