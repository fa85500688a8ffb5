"""Cloudflare's tutorial through aigw's console in headless Chromium, driven over the DevTools
protocol (package `websocket-client`): create a gateway on the gateways page, turn caching on
with a TTL (the second identical request is a HIT), set a limit of 2 a minute (the third
request is a 429), and see those requests in the logs view.

Usage: python console_browser.py CHROMIUM ADMIN_URL DATA_PLANE_PREFIX PROFILE_DIR
  ADMIN_URL          http://127.0.0.1:PORT (an admin listener without a token)
  DATA_PLANE_PREFIX  http://127.0.0.1:PORT/v1/acct
Prints one JSON summary line; exits 1 with `FAIL: …` on stderr on any mismatch.
"""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import websocket  # websocket-client

CHROMIUM, ADMIN, PREFIX, PROFILE = sys.argv[1:5]
summary = {"ok": False, "step": None}


class Mismatch(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Mismatch(msg)


class Browser:
    def __init__(self):
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={PROFILE}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(PROFILE, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file):
            check(time.monotonic() < deadline, "Chromium did not open its DevTools port in 30 s")
            time.sleep(0.1)
        time.sleep(0.2)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.send("Page.enable")

    def send(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mine:
                check("error" not in msg, f"{method}: {msg.get('error')}")
                return msg.get("result", {})
        raise Mismatch(f"{method}: no answer in 30 s")

    def wait_load(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Page.loadEventFired":
                return
        raise Mismatch("the page did not load in 30 s")

    def goto(self, url):
        self.send("Page.navigate", url=url)
        self.wait_load()

    def js(self, expression):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        check("exceptionDetails" not in r, f"script failed: {expression}: {r.get('exceptionDetails')}")
        return r.get("result", {}).get("value")

    def submit(self, script):
        """Runs a script that fills and submits a form, then waits for the next page."""
        self.js(script)
        self.wait_load()

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.kill()


def chat(prompt):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
    req = urllib.request.Request(f"{PREFIX}/tutorial/openai/chat/completions", data=body.encode(),
                                 method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.headers.get("cf-aig-cache-status")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("cf-aig-cache-status")


def main(b):
    summary["step"] = "gateways page"
    b.goto(f"{ADMIN}/console")
    check(b.js("document.title").startswith("aigw"), "the console did not load")

    summary["step"] = "create"
    b.submit("document.querySelector('#create [name=id]').value = 'tutorial';"
             "document.querySelector('#create [name=account]').value = 'acct';"
             "document.querySelector('#create').submit()")
    check(b.js("location.pathname") == "/console/gateways/tutorial",
          f"after create: at {b.js('location.pathname')}: {b.js('document.body.innerText')[:300]}")

    summary["step"] = "caching on"
    b.submit("const f = document.querySelector('#settings');"
             "f.querySelector('[name=cache]').checked = true;"
             "f.querySelector('[name=cache_ttl]').value = '300';"
             "f.submit()")
    check(b.js("!document.querySelector('#error')"), f"caching: {b.js('document.body.innerText')[:300]}")
    first, second = chat("the same question"), chat("the same question")
    summary["cache"] = [first, second]
    check(first == (200, "MISS") and second == (200, "HIT"), f"cache: {first} then {second}")

    summary["step"] = "rate limit"
    b.submit("const f = document.querySelector('#settings');"
             "f.querySelector('[name=rate]').checked = true;"
             "f.querySelector('[name=rate_limiting_limit]').value = '2';"
             "f.querySelector('[name=rate_limiting_interval]').value = '60';"
             "f.submit()")
    check(b.js("!document.querySelector('#error')"), f"limit: {b.js('document.body.innerText')[:300]}")
    statuses = [chat(f"question {n}")[0] for n in range(3)]
    summary["limited"] = statuses
    check(statuses == [200, 200, 429], f"limit of 2 a minute: {statuses}")

    summary["step"] = "logs view"
    rows = 0
    for _ in range(50):
        b.goto(f"{ADMIN}/dashboard?gateway=tutorial&range=24h")
        rows = b.js("document.querySelectorAll('tr.log-row').length")
        if rows >= 5:
            break
        time.sleep(0.1)
    summary["log_rows"] = rows
    check(rows >= 5, f"the logs view shows {rows} requests, expected 5")
    summary["step"] = "done"
    summary["ok"] = True


browser = None
try:
    browser = Browser()
    main(browser)
except Exception as e:  # noqa: BLE001 — report the step, whatever broke
    summary["error"] = f"{type(e).__name__}: {e}"
finally:
    if browser:
        browser.close()
print(json.dumps(summary))
if not summary["ok"]:
    print(f"FAIL at {summary['step']}: {summary.get('error')}", file=sys.stderr)
    sys.exit(1)
