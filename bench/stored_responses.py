"""Stored responses' cost (issue 20's note): compat/responses to the mock's Anthropic model, on a gateway that
keeps responses and on one that does not, plus turns continued by previous_response_id.
Sequential, keep-alive, N requests per series, series interleaved in rounds.

Usage: python3 bench/stored_responses.py PORT N
  against `aigw serve` on 127.0.0.1:PORT with `[providers.anthropic]` pointed at
  `aigw mock-provider --lean`, and two gateways: `plain` (pipeline = ["logging"]) and `kept`
  (the same, with store_responses = true). Reports p50/p95 per series and the ratios to plain."""
import http.client, json, statistics, sys, time
host, port, n = "127.0.0.1", int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection(host, port)
def post(gw, body):
    t = time.perf_counter()
    conn.request("POST", f"/v1/acct/{gw}/compat/responses", json.dumps(body),
                 {"content-type": "application/json", "authorization": "Bearer sk-x"})
    r = conn.getresponse(); data = r.read()
    assert r.status == 200, data
    return time.perf_counter() - t, json.loads(data)
series = {"plain": [], "kept": [], "continued": []}
last = None
for rnd in range(n):
    for name in ["plain", "kept", "continued"]:
        body = {"model": "anthropic/claude-3-5-haiku", "input": f"hello {rnd}"}
        gw = "plain" if name == "plain" else "kept"
        if name == "continued" and last:
            body["previous_response_id"] = last
        dt, v = post(gw, body)
        if name == "kept":
            last = v["id"]
        series[name].append(dt * 1e6)
for name, xs in series.items():
    xs.sort()
    print(f"{name:10s} p50 {statistics.median(xs):8.0f} us  p95 {xs[int(len(xs)*0.95)]:8.0f} us")
p = statistics.median(series["plain"])
print(f"kept/plain p50 ratio {statistics.median(series['kept'])/p:.2f}; continued/plain {statistics.median(series['continued'])/p:.2f}")
