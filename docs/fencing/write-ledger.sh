#!/bin/sh
# The command under `highlander run`: appends to a ledger in a database of its own,
# fenced by HIGHLANDER_FENCING_TOKEN. A deposed term's late run fails (exit 3) and
# writes nothing. DATA_URL names the database (postgres://user@host/db); its password,
# if any, comes in DATA_PASSWORD — not the lock store's, which the command never gets.
set -eu
PGPASSWORD="${DATA_PASSWORD:-}" exec psql "$DATA_URL" -X -q -v ON_ERROR_STOP=1 \
  -v token="$HIGHLANDER_FENCING_TOKEN" -v who="$HIGHLANDER_IDENTITY" <<'SQL'
BEGIN;
SELECT fence('ledger', :token);
INSERT INTO ledger (token, writer, at) VALUES (:token, :'who', now());
COMMIT;
SQL
