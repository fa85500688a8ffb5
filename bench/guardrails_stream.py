"""Guardrails' cost on streamed answers (issue 21's note): time to the first text and to the end of
a streamed chat completion, straight to the mock, through a gateway without guardrails, and through
gateways whose guardrails hold each window of the answer until it is classified.

Usage: cargo build --release -p aigw && python3 bench/guardrails_stream.py [N]
  It starts `target/release/aigw mock-provider --lean` and `aigw serve` on free loopback ports,
  with these gateways (in a temporary directory), and stops both at the end:
    plain       pipeline = ["logging"]
    local800    pipeline = ["logging", "guardrails"], classifier = "local" (the default), window_chars = 800
    local200    the same with window_chars = 200
    moderation  classifier = "openai-moderation" on the mock's /v1/moderations, window_chars = 800

Two answers, each 200 words of 6 characters (1,200 characters):
  paced    one word every 5 ms, about as fast as a fast model streams: time to first text shows the
           window held back (800 characters arrive after about 133 words, i.e. ~670 ms);
  unpaced  no delay between words: the filter's own work per stream (scanning, holding, classifying).
Sequential requests on one keep-alive connection per target, the targets interleaved in rounds,
N rounds (default 30). Reports p50 per target and the ratios to the gateway without guardrails
and to the mock itself."""
import http.client, json, os, socket, statistics, subprocess, sys, tempfile, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
assert 1 <= n <= 1000, "N is 1..1000"
AIGW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "aigw")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on 127.0.0.1:{port}")


mock_port, gw_port = free_port(), free_port()
work = tempfile.mkdtemp(prefix="aigw-bench-guardrails-")
guard = "pipeline = [\"logging\", \"guardrails\"]\n"
with open(os.path.join(work, "aigw.toml"), "w") as f:
    f.write(f"""[server]
listen = "127.0.0.1:{gw_port}"
data_dir = "{work}/data"
plugins_dir = "{work}/plugins.d"
[providers.openai]
base_url = "http://127.0.0.1:{mock_port}/v1"
[gateways.plain]
pipeline = ["logging"]
[gateways.local800]
{guard}[gateways.local800.filters.guardrails]
window_chars = 800
[gateways.local200]
{guard}[gateways.local200.filters.guardrails]
window_chars = 200
[gateways.moderation]
{guard}[gateways.moderation.filters.guardrails]
classifier = "openai-moderation"
endpoint = "http://127.0.0.1:{mock_port}/v1/moderations"
allow_http = ["http://127.0.0.1:{mock_port}"]
window_chars = 800
""")
log = open(os.path.join(work, "processes.log"), "w")
procs = [subprocess.Popen([AIGW, "mock-provider", "--lean", "--listen", f"127.0.0.1:{mock_port}"],
                          stdout=log, stderr=log),
         subprocess.Popen([AIGW, "serve", "--config", os.path.join(work, "aigw.toml")],
                          stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})]
wait_for(mock_port)
wait_for(gw_port)
WORDS = 200
REPLY = " ".join(f"w{i:04d}" for i in range(WORDS))
TARGETS = {
    "direct": (mock_port, "/v1/chat/completions"),
    "plain": (gw_port, "/v1/acct/plain/openai/chat/completions"),
    "local800": (gw_port, "/v1/acct/local800/openai/chat/completions"),
    "local200": (gw_port, "/v1/acct/local200/openai/chat/completions"),
    "moderation": (gw_port, "/v1/acct/moderation/openai/chat/completions"),
}
conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for name, (port, _) in TARGETS.items()}
BODY = json.dumps({"model": "gpt-4o-mini", "stream": True,
                   "messages": [{"role": "user", "content": "tell me a story"}]})


def one(name, delay_ms):
    port, path = TARGETS[name]
    conn = conns[name]
    started = time.perf_counter()
    conn.request("POST", path, BODY, {
        "content-type": "application/json", "authorization": "Bearer sk-bench",
        "x-mock-reply": REPLY, "x-mock-chunk-delay-ms": str(delay_ms)})
    r = conn.getresponse()
    assert r.status == 200, (name, r.status, r.read()[:300])
    first, text = None, []
    while True:
        line = r.readline()
        if not line:
            break
        if not line.startswith(b"data: {"):
            continue
        event = json.loads(line[6:])
        assert "error" not in event, (name, event)
        for choice in event.get("choices", []):
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece and first is None:
                first = time.perf_counter() - started
            text.append(piece)
    ended = time.perf_counter() - started
    assert "".join(text) == REPLY, (name, "".join(text)[:200])
    return first * 1e3, ended * 1e3


def report():
    for label, delay in [("paced (5 ms a word)", 5), ("unpaced", 0)]:
        firsts = {name: [] for name in TARGETS}
        ends = {name: [] for name in TARGETS}
        one("plain", delay)  # warm the connections and the filters' instances
        for name in TARGETS:
            one(name, delay)
        for _ in range(n):
            for name in TARGETS:
                f, e = one(name, delay)
                firsts[name].append(f)
                ends[name].append(e)
        print(f"\n{label}, {n} streams per target, 1,200 characters each")
        print(f"{'target':11s} {'first text p50':>15s} {'end p50':>10s} {'first/plain':>12s} {'end/plain':>10s} {'end/direct':>11s}")
        p_first = statistics.median(firsts["plain"])
        p_end = statistics.median(ends["plain"])
        d_end = statistics.median(ends["direct"])
        for name in TARGETS:
            f, e = statistics.median(firsts[name]), statistics.median(ends[name])
            print(f"{name:11s} {f:12.2f} ms {e:7.2f} ms {f / p_first:11.2f}x {e / p_end:9.2f}x {e / d_end:10.2f}x")


try:
    report()
finally:
    for p in procs:
        p.terminate()
        p.wait(timeout=10)
    log.close()
