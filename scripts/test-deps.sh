#!/usr/bin/env bash
# Installs and starts what the optional end-to-end tests need (tests/optional), so that
# `cargo test --workspace` runs them instead of skipping them:
#   Redis (shared kv and limits), PostgreSQL (shared log store: a cluster, role aigw, database aigw),
#   Chromium (dashboard test), the official OpenAI and Anthropic Python SDKs and componentize-py
#   (in .venv at the repository root), Node with the Vercel AI SDK, Claude Code and Codex
#   (tests/sdk/node/node_modules).
# Debian/Ubuntu, as root (apt-get). Safe to run again. When sourced (as .ci/run does) it also
# exports AIGW_TEST_POSTGRES_URL for the cluster it found.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

apt_updated=""
need_apt() { # need_apt COMMAND PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
        apt-get install -y -qq "$2"
    fi
}

need_apt chromium chromium
need_apt redis-server redis-server
need_apt pg_lsclusters postgresql

# PostgreSQL: Debian's newest installed version, its `main` cluster started, a role and a database.
pg_version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$pg_version main"; then
    pg_createcluster "$pg_version" main
fi
pg_ctlcluster "$pg_version" main start 2>/dev/null || true
pg_port=$(pg_lsclusters -h | awk -v v="$pg_version" '$1==v && $2=="main" {print $3}')
if [ -z "$pg_port" ]; then
    echo "scripts/test-deps.sh: no PostgreSQL $pg_version cluster 'main' found (pg_lsclusters)" >&2
    exit 1
fi
as_postgres() { runuser -u postgres -- "$@"; }
if [ "$(as_postgres psql -p "$pg_port" -tAc "SELECT 1 FROM pg_roles WHERE rolname='aigw'")" != 1 ]; then
    as_postgres psql -p "$pg_port" -qc "CREATE ROLE aigw LOGIN PASSWORD 'aigw'"
fi
if [ "$(as_postgres psql -p "$pg_port" -tAc "SELECT 1 FROM pg_database WHERE datname='aigw'")" != 1 ]; then
    as_postgres createdb -p "$pg_port" -O aigw aigw
fi
export AIGW_TEST_POSTGRES_URL="postgres://aigw:aigw@127.0.0.1:$pg_port/aigw"
if [ "$pg_port" != 5432 ]; then
    echo "PostgreSQL listens on $pg_port: export AIGW_TEST_POSTGRES_URL=$AIGW_TEST_POSTGRES_URL"
fi

# The Python SDKs and componentize-py (builds the Python example filter) in .venv.
if ! python3 -m venv "$repo/.venv" 2>/dev/null; then
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    apt-get install -y -qq python3-venv
    python3 -m venv "$repo/.venv"
fi
"$repo/.venv/bin/pip" install --quiet --disable-pip-version-check "openai[realtime]" anthropic cloudflare==5.9.0 websocket-client==1.8.0 boto3 google-genai cohere cryptography componentize-py==0.25.1

# Node and the Vercel AI SDK (tests/sdk/node, versions pinned by its package-lock.json).
need_apt node nodejs
need_apt npm npm
npm ci --silent --no-audit --no-fund --prefix "$repo/tests/sdk/node"
