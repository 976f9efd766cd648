#!/usr/bin/env bash
# Makes a PostgreSQL server answer on 127.0.0.1:5432 with trust auth and a database `test`:
# starts the installed cluster when it is down, installs PostgreSQL when it is missing.
set -euo pipefail

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 && ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "installing PostgreSQL" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

if ! ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "fhir-bridge test access" "$hba"; then
    # local test server only: trust on loopback, as on the development machines
    sed -i '1i host all all 127.0.0.1/32 trust # fhir-bridge test access\nhost all all ::1/128 trust # fhir-bridge test access' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
ready || { echo "PostgreSQL did not start" >&2; exit 1; }

if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test" >/dev/null
fi
