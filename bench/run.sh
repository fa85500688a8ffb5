#!/usr/bin/env bash
# Side-by-side benchmark of aigw against nginx and peer AI gateways, on
# loopback only. Installs its tools, starts every process under the same CPU
# placement, measures in interleaved rounds with bench/driver (aigw-bench),
# and writes BENCHMARKS.md plus raw JSON in target/bench/.
#
#   bench/run.sh            full run (installs LiteLLM, Portkey, crabllm; ~15 min
#                           of measuring after the installs)
#   bench/run.sh --quick    CI smoke: tiny counts, 2 rounds, direct/nginx/aigw only,
#                           everything (report included) in target/bench/quick/, no
#                           timing assertions
#   --out FILE              write the report somewhere else
#
# Placement: every gateway/proxy process runs under `taskset -c 1`; the mock
# provider and the load generator under `taskset -c 0`. Every process started
# here is stopped by pid when the script exits, whatever the reason.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
REPORT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) REPORT=$2; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# Tools are shared; a quick run keeps its results apart from the full run's.
TOOLS=$ROOT/target/bench/tools
OUT=$ROOT/target/bench
[ $QUICK = 1 ] && OUT=$ROOT/target/bench/quick
LOGS=$OUT/logs
mkdir -p "$OUT" "$TOOLS" "$LOGS"
RUN=$(mktemp -d /tmp/aigw-bench.XXXXXX)
META=$OUT/meta.tsv
: > "$META"
if [ -z "$REPORT" ]; then
    if [ $QUICK = 1 ]; then REPORT=$OUT/BENCHMARKS.md; else REPORT=$ROOT/BENCHMARKS.md; fi
fi

# Pinned peer versions.
LITELLM_VERSION=1.106.12
PORTKEY_VERSION=1.15.2
# Portkey 1.15.2 with a current @hono/node-server fails every streamed chat
# completion ("TypeError: immutable" in updateHeaders, Portkey-AI/gateway
# issues 1389 and 1550); 1.13.8 still copies the headers (1.14.2 and 1.19 do not).
HONO_NODE_SERVER_VERSION=1.13.8
CRABLLM_VERSION=0.0.25

START=$(date +%s)
say() { printf '[bench %4ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }
meta() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$META"; }
skip() { say "skipping $1: $2"; meta skip "$1" "$2"; }
meta files dir "${OUT#"$ROOT/"}"

# ---- processes: started here, stopped by pid ---------------------------------
PIDS=()
declare -A PID_OF=()

kill_tree() {
    local pid=$1 kid
    if command -v pgrep >/dev/null 2>&1; then
        for kid in $(pgrep -P "$pid" 2>/dev/null || true); do kill_tree "$kid"; done
    fi
    kill -TERM "$pid" 2>/dev/null || true
}

stop() { # stop NAME...: TERM the process tree, bounded wait, then KILL
    local name pid i
    for name in "$@"; do
        pid=${PID_OF[$name]:-}
        [ -n "$pid" ] || continue
        kill_tree "$pid"
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "PID_OF[$name]"
    done
}

cleanup() {
    local rc=$? pid i alive
    set +e
    for pid in "${PIDS[@]}"; do kill_tree "$pid"; done
    for i in $(seq 1 50); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    rm -rf "$RUN"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CPU [--cwd DIR] CMD...: runs CMD pinned to CPU, output in logs/NAME.log.
start() {
    local name=$1 cpu=$2 cwd=.
    shift 2
    if [ "$1" = --cwd ]; then cwd=$2; shift 2; fi
    ( cd "$cwd" && exec taskset -c "$cpu" "$@" ) > "$LOGS/$name.log" 2>&1 &
    PIDS+=("$!")
    PID_OF[$name]=$!
}

# wait_line NAME PATTERN SECONDS: waits for a line in the process log; prints the rest after PATTERN.
wait_line() {
    local name=$1 pattern=$2 secs=$3 i line
    for i in $(seq 1 $(( secs * 10 ))); do
        line=$(grep -m1 -o "$pattern.*" "$LOGS/$name.log" 2>/dev/null || true)
        if [ -n "$line" ]; then echo "${line#"$pattern"}" | tr -d '\r '; return 0; fi
        kill -0 "${PID_OF[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    say "$name did not print '$pattern' within ${secs}s; last lines of its log:"
    tail -5 "$LOGS/$name.log" >&2 || true
    return 1
}

# wait_ready NAME URL SECONDS [HEADER...]: a chat completion answered 200.
wait_ready() {
    local name=$1 url=$2 secs=$3 i hdrs=()
    shift 3
    for h in "$@"; do hdrs+=(-H "$h"); done
    for i in $(seq 1 $(( secs * 4 ))); do
        if curl -sf -m 5 -o /dev/null "${hdrs[@]}" -H 'content-type: application/json' \
            -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ready?"}]}' "$url"; then
            return 0
        fi
        kill -0 "${PID_OF[$name]}" 2>/dev/null || break
        sleep 0.25
    done
    say "$name did not answer at $url within ${secs}s; last lines of its log:"
    tail -5 "$LOGS/$name.log" >&2 || true
    return 1
}

cargo_locked() { # every cargo command goes through the shared build lock
    if command -v flock >/dev/null 2>&1; then flock /tmp/cargo.lock cargo "$@"; else cargo "$@"; fi
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v taskset >/dev/null || { echo "bench/run.sh: taskset (util-linux) is required" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench/run.sh: curl is required" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || say "warning: fewer than 2 CPUs; cores 0 and 1 are assumed"

# ---- installs (heavy ones first, before anything is measured) ----------------
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get install -y -qq "$@" || { apt-get update -qq && apt-get install -y -qq "$@"; }; } \
            > "$LOGS/apt-$1.log" 2>&1
    else
        return 1
    fi
}

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
    say "installing nginx (Debian package)"
    apt_install nginx || true
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
[ -x "$NGINX" ] || skip nginx "the Debian package nginx could not be installed (see target/bench/logs/apt-nginx.log)"

LITELLM=""
PORTKEY_DIR=""
CRABLLM=""
if [ $QUICK = 1 ]; then
    for p in litellm portkey crabllm; do skip $p "not run in --quick mode (peers are installed and measured by the full run only)"; done
else
    # LiteLLM proxy in its own venv.
    LITELLM_VENV=$TOOLS/litellm-venv
    if [ ! -x "$LITELLM_VENV/bin/litellm" ] \
        || [ "$("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | sed -n 's/^Version: //p')" != "$LITELLM_VERSION" ]; then
        say "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV"
        if ! python3 -m venv "$LITELLM_VENV" > "$LOGS/litellm-install.log" 2>&1; then
            apt_install python3-venv || true
            python3 -m venv "$LITELLM_VENV" >> "$LOGS/litellm-install.log" 2>&1 || true
        fi
        "$LITELLM_VENV/bin/pip" install --quiet --disable-pip-version-check \
            "litellm[proxy]==$LITELLM_VERSION" >> "$LOGS/litellm-install.log" 2>&1 || true
    fi
    if [ -x "$LITELLM_VENV/bin/litellm" ]; then LITELLM=$LITELLM_VENV/bin/litellm
    else skip litellm "pip install 'litellm[proxy]==$LITELLM_VERSION' failed (see target/bench/logs/litellm-install.log)"; fi

    # Portkey gateway from npm, with the @hono/node-server pin above.
    PORTKEY_DIR=$TOOLS/portkey
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        if [ ! -f "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" ] \
            || ! grep -q "\"version\": \"$HONO_NODE_SERVER_VERSION\"" "$PORTKEY_DIR/node_modules/@hono/node-server/package.json" 2>/dev/null \
            || ! grep -q "\"version\": \"$PORTKEY_VERSION\"" "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json" 2>/dev/null; then
            say "installing @portkey-ai/gateway@$PORTKEY_VERSION (npm)"
            mkdir -p "$PORTKEY_DIR"
            cat > "$PORTKEY_DIR/package.json" <<EOF
{
  "name": "aigw-bench-portkey",
  "private": true,
  "dependencies": { "@portkey-ai/gateway": "$PORTKEY_VERSION" },
  "overrides": { "@hono/node-server": "$HONO_NODE_SERVER_VERSION" }
}
EOF
            (cd "$PORTKEY_DIR" && npm install --no-audit --no-fund --ignore-scripts) > "$LOGS/portkey-install.log" 2>&1 || true
        fi
        [ -f "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" ] \
            || { PORTKEY_DIR=""; skip portkey "npm install @portkey-ai/gateway@$PORTKEY_VERSION failed (see target/bench/logs/portkey-install.log)"; }
    else
        PORTKEY_DIR=""
        skip portkey "node and npm are not installed"
    fi

    # crabllm from crates.io (compiled here, under the shared cargo lock).
    CRABLLM=$TOOLS/crabllm/bin/crabllm
    if [ ! -x "$CRABLLM" ] || [ "$(cat "$TOOLS/crabllm/.version" 2>/dev/null)" != "$CRABLLM_VERSION" ]; then
        say "installing crabllm $CRABLLM_VERSION (cargo install --locked; compiles for a few minutes)"
        if cargo_locked install crabllm --version "$CRABLLM_VERSION" --locked --root "$TOOLS/crabllm" \
            > "$LOGS/crabllm-install.log" 2>&1; then
            echo "$CRABLLM_VERSION" > "$TOOLS/crabllm/.version"
        fi
    fi
    [ -x "$CRABLLM" ] || { CRABLLM=""; skip crabllm "cargo install crabllm --version $CRABLLM_VERSION --locked failed (see target/bench/logs/crabllm-install.log)"; }
fi

# ---- builds ------------------------------------------------------------------
if [ $QUICK = 1 ]; then PROFILE=${BENCH_PROFILE:-dev}; else PROFILE=${BENCH_PROFILE:-release}; fi
case $PROFILE in dev) BIN=$ROOT/target/debug ;; *) BIN=$ROOT/target/$PROFILE ;; esac
say "building aigw and the driver (profile $PROFILE) and the no-op filter"
cargo_locked build --profile "$PROFILE" -p aigw -p aigw-bench-driver > "$LOGS/build.log" 2>&1 \
    || { tail -20 "$LOGS/build.log" >&2; exit 1; }
cargo_locked build -p aigw-stateless-filter --profile wasm --target wasm32-wasip2 >> "$LOGS/build.log" 2>&1 \
    || { tail -20 "$LOGS/build.log" >&2; exit 1; }
AIGW=$BIN/aigw
DRIVER=$BIN/aigw-bench
NOOP_WASM=$ROOT/target/wasm32-wasip2/wasm/aigw_stateless_filter.wasm
[ -f "$NOOP_WASM" ] || { echo "bench/run.sh: $NOOP_WASM missing after the build" >&2; exit 1; }
meta build profile "$PROFILE"

# ---- machine and versions ----------------------------------------------------
meta machine date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta machine cpu "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1) ($(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p' | head -1 | sed 's/^$/bare metal/;s/^\(.\+\)$/hypervisor \1/'))"
meta machine cores "$(nproc) online ($(lscpu 2>/dev/null | sed -n 's/^Thread(s) per core: *//p') thread(s) per core)"
meta machine memory "$(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
meta machine kernel "$(uname -sr)"
meta machine os "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
meta machine note "shared machine, other work may run beside the benchmark; hence interleaving and the noise guard"
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || GIT_REV="$GIT_REV + uncommitted changes"
meta version aigw "$("$AIGW" --version | awk '{print $2}') (git $GIT_REV), profile $PROFILE"
meta version rustc "$(rustc --version)"
[ -x "$NGINX" ] && meta version nginx "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //') (Debian package $(dpkg-query -W -f '${Version}' nginx 2>/dev/null || echo '?'))"
meta version curl "$(curl --version | head -1 | awk '{print $2}')"
if [ -n "$LITELLM" ]; then
    meta version litellm "$("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | sed -n 's/^Version: //p') on $("$LITELLM_VENV/bin/python" --version 2>&1), uvicorn $("$LITELLM_VENV/bin/pip" show uvicorn 2>/dev/null | sed -n 's/^Version: //p')"
fi
if [ -n "$PORTKEY_DIR" ]; then
    meta version portkey "@portkey-ai/gateway $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json" | head -1) on node $(node --version), @hono/node-server $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$PORTKEY_DIR/node_modules/@hono/node-server/package.json" | head -1), hono $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$PORTKEY_DIR/node_modules/hono/package.json" | head -1)"
fi
[ -n "$CRABLLM" ] && meta version crabllm "$CRABLLM_VERSION (crates.io, cargo install --locked, default features)"

# ---- start the processes -----------------------------------------------------
# Every process logs at its own default level (aigw: info, nothing per request;
# crabllm: one line per request; LiteLLM/uvicorn: one access line per request).
unset RUST_LOG
say "starting the mock provider (core 0)"
start mock 0 "$AIGW" mock-provider --listen 127.0.0.1:0 --lean
MOCK=$(wait_line mock "mock provider listening on http://" 30)
meta placement "mock provider (aigw mock-provider --lean: no request recording)" "core 0, pid ${PID_OF[mock]}"
free_port() { "$DRIVER" free-port; }

TARGETS=()
# target NAME LABEL PROCESS PID URL PHASES [extra JSON fields]
target() {
    TARGETS+=("{\"name\":\"$1\",\"label\":\"$2\",\"process\":\"$3\",\"pid\":$4,\"url\":\"$5\",\"model\":\"gpt-4o-mini\",\"phases\":$6${7:+,$7}}")
}
ALL='["c1","stream","conc"]'
target direct "direct to mock" mock "${PID_OF[mock]}" "http://$MOCK/v1/chat/completions" "$ALL"

if [ -x "$NGINX" ]; then
    NGINX_PORT=$(free_port)
    mkdir -p "$RUN/nginx/logs" "$RUN/nginx/tmp"
    MOCK_PORT=${MOCK##*:}
    cat > "$RUN/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $RUN/nginx/tmp/body;
    proxy_temp_path $RUN/nginx/tmp/proxy;
    fastcgi_temp_path $RUN/nginx/tmp/fastcgi;
    uwsgi_temp_path $RUN/nginx/tmp/uwsgi;
    scgi_temp_path $RUN/nginx/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream mock {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
    say "starting nginx (core 1)"
    start nginx 1 "$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/logs/error.log"
    if wait_ready nginx "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" 20; then
        target nginx "nginx $("$NGINX" -v 2>&1 | sed 's/^nginx version: nginx\///'), plain reverse proxy" nginx "${PID_OF[nginx]}" "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" "$ALL"
        meta peer nginx "Debian package nginx, run as a non-daemon (\`daemon off\`, \`-p\` prefix in a temp dir), 1 worker process, \`proxy_pass\` to an upstream block with \`keepalive 256\`, HTTP/1.1 upstream with \`Connection: \"\"\`, \`proxy_buffering off\` (SSE passes through), \`access_log off\`, keep-alive requests unlimited."
        meta placement nginx "core 1 (taskset -c 1), pid ${PID_OF[nginx]}"
    else
        stop nginx
        skip nginx "started but did not answer (see target/bench/logs/nginx.log)"
    fi
fi

# aigw configs: one process per variant so each has its own CPU and memory.
aigw_config() { # aigw_config DIR GATEWAY-TOML [SERVER-LINES]
    mkdir -p "$1/plugins.d" "$1/data"
    cat > "$1/aigw.toml" <<EOF
[server]
listen = "127.0.0.1:0"
plugins_dir = "plugins.d"
data_dir = "data"
${3:-}

[providers.openai]
base_url = "http://$MOCK/v1"

$2
EOF
    "$AIGW" check --config "$1/aigw.toml" > "$LOGS/check-$(basename "$1").log" 2>&1 \
        || { echo "bench/run.sh: aigw check failed for $1/aigw.toml:" >&2; cat "$LOGS/check-$(basename "$1").log" >&2; exit 1; }
}
DEFAULT_GW='[gateways.default]
pipeline = ["logging", "rate-limit", "cache", "retry"]

[gateways.default.filters.rate-limit]
limit = 1000000000
period_s = 60'
# The empty pipeline's process also serves virtual keys: one gateway resolving a key only, one
# with the key-policy filter enforcing a budget (a reservation and a settlement per request).
aigw_config "$RUN/aigw-empty" '[gateways.empty]
pipeline = []

[gateways.keyed]
keys = "required"
pipeline = []

[gateways.keypolicy]
keys = "required"
pipeline = ["key-policy"]' 'admin_listen = "127.0.0.1:0"'
aigw_config "$RUN/aigw-default" "$DEFAULT_GW"
NOOP_TOML=""
for n in 0 1 2 4 8; do
    list=""
    for i in $(seq 1 $n); do list="$list${list:+, }\"noop$i\""; done
    NOOP_TOML="$NOOP_TOML
[gateways.noop$n]
pipeline = [$list]
"
done
mkdir -p "$RUN/aigw-noop/plugins.d"
for i in 1 2 3 4 5 6 7 8; do cp "$NOOP_WASM" "$RUN/aigw-noop/plugins.d/noop$i.wasm"; done
aigw_config "$RUN/aigw-noop" "$NOOP_TOML"

start_aigw() { start "$1" 1 --cwd "$RUN/$1" "$AIGW" serve --config "$RUN/$1/aigw.toml"; }
say "starting aigw: empty pipeline, default pipeline, no-op pipelines (core 1)"
start_aigw aigw-empty
start_aigw aigw-default
start_aigw aigw-noop
GW_EMPTY=$(wait_line aigw-empty "aigw listening on http://" 120)
GW_DEFAULT=$(wait_line aigw-default "aigw listening on http://" 120)
GW_NOOP=$(wait_line aigw-noop "aigw listening on http://" 120)
wait_ready aigw-empty "http://$GW_EMPTY/v1/bench/empty/openai/chat/completions" 30 'authorization: Bearer sk-bench'
wait_ready aigw-default "http://$GW_DEFAULT/v1/bench/default/openai/chat/completions" 30 'authorization: Bearer sk-bench'
wait_ready aigw-noop "http://$GW_NOOP/v1/bench/noop8/openai/chat/completions" 30 'authorization: Bearer sk-bench'
AUTH='"headers":[["authorization","Bearer sk-bench"]]'
GW_EMPTY_ADMIN=$(wait_line aigw-empty "aigw admin listening on http://" 30)
# A key without limits for the key-only gateway (a key with limits is refused where no
# key-policy enforces them), and one with a budget for the key-policy gateway.
new_key() {
    curl -sf -m 10 -H 'content-type: application/json' -d "$1" "http://$GW_EMPTY_ADMIN/api/keys" \
        | sed -n 's/.*"key":"\(aigw-[^"]*\)".*/\1/p'
}
PLAIN_KEY=$(new_key '{"name":"bench","gateways":"*"}')
BUDGET_KEY=$(new_key '{"name":"bench-budget","gateways":"*","budget_usd":{"amount":1000000,"period":"total"}}')
[ -n "$PLAIN_KEY" ] && [ -n "$BUDGET_KEY" ] || { echo "bench/run.sh: could not create virtual keys on the admin API" >&2; exit 1; }
KEYAUTH="\"headers\":[[\"authorization\",\"Bearer $PLAIN_KEY\"]]"
BUDGETAUTH="\"headers\":[[\"authorization\",\"Bearer $BUDGET_KEY\"]]"
target aigw-empty "aigw, empty pipeline" aigw-empty "${PID_OF[aigw-empty]}" "http://$GW_EMPTY/v1/bench/empty/openai/chat/completions" "$ALL" "$AUTH"
target aigw-default "aigw, default pipeline (logging, rate-limit, cache, retry), cache misses" aigw-default "${PID_OF[aigw-default]}" "http://$GW_DEFAULT/v1/bench/default/openai/chat/completions" "$ALL" "$AUTH"
target aigw-cache-hit "aigw, default pipeline, cache hits (one prompt repeated)" aigw-default "${PID_OF[aigw-default]}" "http://$GW_DEFAULT/v1/bench/default/openai/chat/completions" '["c1","conc"]' "$AUTH,\"fixed_prompt\":\"bench: the one cached prompt\""
target aigw-key "aigw, virtual key resolved, empty pipeline" aigw-empty "${PID_OF[aigw-empty]}" "http://$GW_EMPTY/v1/bench/keyed/openai/chat/completions" '["c1"]' "$KEYAUTH,\"c1_factor\":2.0"
target aigw-key-policy "aigw, virtual key and key-policy with a budget" aigw-empty "${PID_OF[aigw-empty]}" "http://$GW_EMPTY/v1/bench/keypolicy/openai/chat/completions" '["c1"]' "$BUDGETAUTH,\"c1_factor\":2.0"
for n in 0 1 2 4 8; do
    target "noop-$n" "aigw, $n no-op filters" aigw-noop "${PID_OF[aigw-noop]}" "http://$GW_NOOP/v1/bench/noop$n/openai/chat/completions" '["c1"]' "$AUTH,\"c1_factor\":2.0"
done
for p in aigw-empty aigw-default aigw-noop; do meta placement "$p" "core 1 (taskset -c 1), pid ${PID_OF[$p]}"; done
meta peer aigw "three processes (empty pipeline; default pipeline \`[\"logging\", \"rate-limit\", \"cache\", \"retry\"]\` with rate-limit \`limit = 1000000000\` so it never refuses, the other filters at their defaults, logging with payloads to SQLite; 0/1/2/4/8 no-op filters), default log level, provider \`openai\` with \`base_url\` at the mock. With unique prompts the cache stores every answer, so the default process grows over the run. For streams aigw asks the provider for the usage chunk and hides it from a client that did not ask: the mock then paces one more event, which shows as one ~20 ms gap per stream (gap p99) and ~10 ms more per stream."

if [ -n "$LITELLM" ]; then
    LITELLM_PORT=$(free_port)
    # A master key is required to start (no key: the proxy refuses, by design).
    LITELLM_KEY="sk-bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    mkdir -p "$RUN/litellm"
    cat > "$RUN/litellm/config.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://$MOCK/v1
      api_key: sk-bench
EOF
    say "starting LiteLLM proxy (core 1)"
    start litellm 1 --cwd "$RUN/litellm" env LITELLM_MASTER_KEY="$LITELLM_KEY" LITELLM_LOCAL_MODEL_COST_MAP=True \
        "$LITELLM" --config "$RUN/litellm/config.yaml" --host 127.0.0.1 --port "$LITELLM_PORT"
    if wait_ready litellm "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" 120 "authorization: Bearer $LITELLM_KEY"; then
        target litellm "LiteLLM proxy $LITELLM_VERSION" litellm "${PID_OF[litellm]}" "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" "$ALL" "\"headers\":[[\"authorization\",\"Bearer $LITELLM_KEY\"]]"
        meta peer litellm "\`pip install 'litellm[proxy]==$LITELLM_VERSION'\` in a venv under target/bench/tools; \`litellm --config config.yaml --host 127.0.0.1\` (uvicorn, 1 worker, default logging), no database; config.yaml has one model \`gpt-4o-mini\` → \`openai/gpt-4o-mini\` with \`api_base\` at the mock; \`LITELLM_MASTER_KEY\` set (the proxy refuses to start without one) and \`LITELLM_LOCAL_MODEL_COST_MAP=True\` (no network fetch of the price map)."
        meta placement litellm "core 1 (taskset -c 1), pid ${PID_OF[litellm]}"
    else
        stop litellm
        skip litellm "installed but did not answer within 120 s (see target/bench/logs/litellm.log)"
    fi
fi

if [ -n "$PORTKEY_DIR" ]; then
    PORTKEY_PORT=$(free_port)
    say "starting Portkey gateway (core 1)"
    # bind-loopback.mjs makes it listen on 127.0.0.1 (it binds every interface otherwise).
    start portkey 1 --cwd "$PORTKEY_DIR/node_modules/@portkey-ai/gateway" env NODE_ENV=production \
        node --import "$ROOT/bench/bind-loopback.mjs" build/start-server.js --port="$PORTKEY_PORT" --headless
    if wait_ready portkey "http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions" 60 'authorization: Bearer sk-bench' 'x-portkey-provider: openai' "x-portkey-custom-host: http://$MOCK/v1"; then
        target portkey "Portkey gateway $PORTKEY_VERSION (node $(node --version))" portkey "${PID_OF[portkey]}" "http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions" "$ALL" "\"headers\":[[\"authorization\",\"Bearer sk-bench\"],[\"x-portkey-provider\",\"openai\"],[\"x-portkey-custom-host\",\"http://$MOCK/v1\"]]"
        meta peer portkey "\`npm install @portkey-ai/gateway@$PORTKEY_VERSION\` under target/bench/tools with an npm override \`@hono/node-server@$HONO_NODE_SERVER_VERSION\` (with the current 1.19 every streamed answer fails with \`TypeError: immutable\`, Portkey-AI/gateway issues 1389/1550); \`node build/start-server.js --port=N --headless\` with \`NODE_ENV=production\`, preloading bench/bind-loopback.mjs so it listens on 127.0.0.1 only; each request names the upstream with headers \`x-portkey-provider: openai\` and \`x-portkey-custom-host: http://MOCK/v1\`. Its stream handler waits 25 ms before passing on the first chunk (\`setTimeout(…, 25)\` in build/start-server.js), which is most of its streaming time to first byte."
        meta placement portkey "core 1 (taskset -c 1), pid ${PID_OF[portkey]}"
    else
        stop portkey
        skip portkey "installed but did not answer within 60 s (see target/bench/logs/portkey.log)"
    fi
fi

if [ -n "$CRABLLM" ]; then
    CRAB_PORT=$(free_port)
    mkdir -p "$RUN/crabllm"
    cat > "$RUN/crabllm/crabllm.toml" <<EOF
listen = "127.0.0.1:$CRAB_PORT"
openapi = false

[providers.mock]
kind = "openai"
api_key = "sk-bench"
base_url = "http://$MOCK/v1"
models = ["gpt-4o-mini"]
EOF
    say "starting crabllm (core 1)"
    start crabllm 1 --cwd "$RUN/crabllm" "$CRABLLM" serve --config "$RUN/crabllm/crabllm.toml"
    if wait_ready crabllm "http://127.0.0.1:$CRAB_PORT/v1/chat/completions" 30; then
        target crabllm "crabllm $CRABLLM_VERSION" crabllm "${PID_OF[crabllm]}" "http://127.0.0.1:$CRAB_PORT/v1/chat/completions" "$ALL"
        meta peer crabllm "\`cargo install crabllm --version $CRABLLM_VERSION --locked\` (default features) into target/bench/tools; \`crabllm serve --config crabllm.toml\` with one provider \`kind = \"openai\"\`, \`base_url\` at the mock, \`models = [\"gpt-4o-mini\"]\`, no keys and no admin token (so no auth), no extensions, \`openapi = false\`, default logging (one info line per request). It asks the provider for the usage chunk of a stream and passes it on (one more event per stream)."
        meta placement crabllm "core 1 (taskset -c 1), pid ${PID_OF[crabllm]}"
    else
        stop crabllm
        skip crabllm "installed but did not answer within 30 s (see target/bench/logs/crabllm.log)"
    fi
fi
meta placement "load generator (aigw-bench, one thread)" "core 0"

# ---- measure -----------------------------------------------------------------
if [ $QUICK = 1 ]; then
    ROUNDS=2 DEADLINE=90 WARM=20 C1=40 C1S=1 STREAMS=2 STREAMS_S=1.5 CONC=200 CONCS=0.5 SETTLE=0.5
    HOLD_N=100 HOLD_DELAY=100
else
    # Counts are upper bounds; the time bounds end most phases of fast targets.
    ROUNDS=7 DEADLINE=2400 WARM=200 C1=2000 C1S=4 STREAMS=12 STREAMS_S=3 CONC=100000 CONCS=2 SETTLE=2
    HOLD_N=1000 HOLD_DELAY=400
fi
if [ $QUICK = 0 ]; then
    # A shared machine: wait (bounded) for other work to calm down before measuring.
    for i in $(seq 1 60); do
        awk '{exit !($1 < 1.0)}' /proc/loadavg && break
        [ "$i" = 1 ] && say "1-minute load average is $(cut -d' ' -f1 /proc/loadavg); waiting up to 5 min for it to drop below 1.0"
        sleep 5
    done
fi
meta note load "load average (1, 5, 15 min) when measuring started: $(cut -d' ' -f1-3 /proc/loadavg)"
TARGETS_JSON=$(IFS=,; echo "${TARGETS[*]}")
cat > "$RUN/plan.json" <<EOF
{"mode":"$([ $QUICK = 1 ] && echo quick || echo full)","rounds":$ROUNDS,"deadline_s":$DEADLINE,
 "warmup_requests":$WARM,"c1_requests":$C1,"c1_max_s":$C1S,"stream_requests":$STREAMS,"stream_max_s":$STREAMS_S,
 "conc_requests":$CONC,"conc_max_s":$CONCS,"concurrency":[16,64],"request_timeout_s":30,"noisy_factor":1.5,
 "settle_s":$SETTLE,"targets":[$TARGETS_JSON]}
EOF
cp "$RUN/plan.json" "$OUT/plan.json"
say "measuring ${#TARGETS[@]} targets in $ROUNDS interleaved rounds (bounded at ${DEADLINE}s)"
timeout $(( DEADLINE + 600 )) taskset -c 0 "$DRIVER" run --plan "$RUN/plan.json" --out "$OUT/raw.json" 2> "$LOGS/driver.log" \
    || { tail -20 "$LOGS/driver.log" >&2; exit 1; }
grep -E "warm-up|round" "$LOGS/driver.log" | tail -3 >&2 || true
meta note load-after "load average (1, 5, 15 min) when the rounds ended: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1,000 streams held at once through a fresh aigw (default pipeline) --------
say "stopping the round processes; holding $HOLD_N concurrent streams through a fresh aigw"
stop litellm portkey crabllm nginx aigw-empty aigw-default aigw-noop
rm -f "$OUT/hold.json"
aigw_config "$RUN/aigw-hold" "$DEFAULT_GW"
start_aigw aigw-hold
GW_HOLD=$(wait_line aigw-hold "aigw listening on http://" 120)
wait_ready aigw-hold "http://$GW_HOLD/v1/bench/default/openai/chat/completions" 30 'authorization: Bearer sk-bench'
timeout 300 taskset -c 0 "$DRIVER" hold --url "http://$GW_HOLD/v1/bench/default/openai/chat/completions" \
    --pid "${PID_OF[aigw-hold]}" --streams "$HOLD_N" --label "aigw, default pipeline" \
    --header 'authorization: Bearer sk-bench' --header "x-mock-chunk-delay-ms: $HOLD_DELAY" \
    --max-s 120 --settle-s "$SETTLE" --out "$OUT/hold.json" 2>> "$LOGS/driver.log" >&2 \
    || say "the hold run failed (see target/bench/logs/driver.log); reporting without it"
stop aigw-hold

# ---- report ------------------------------------------------------------------
"$DRIVER" report --raw "$OUT/raw.json" --hold "$OUT/hold.json" --meta "$META" --out "$REPORT" >&2
say "done in $(( $(date +%s) - START )) s; report: $REPORT"
if [ $QUICK = 1 ]; then
    # The smoke test: every target answered, without errors (timing is not judged).
    "$DRIVER" check --raw "$OUT/raw.json" --hold "$OUT/hold.json" >&2
fi
