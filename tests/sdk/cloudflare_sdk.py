"""Drives aigw's Cloudflare-compatible management API with the official Cloudflare Python SDK
(PyPI `cloudflare`, written against 5.9.0), changing only base_url and the token.

Usage: python cloudflare_sdk.py BASE_URL API_TOKEN ACCOUNT_ID DATA_PLANE_PREFIX
  BASE_URL           the admin listener's …/client/v4
  API_TOKEN          the admin token (sent as `Authorization: Bearer …` by the SDK)
  ACCOUNT_ID         any non-empty string; the SDK puts it in the path, percent-encoded
  DATA_PLANE_PREFIX  …/v1/{account}: chat requests go to {prefix}/tutorial/openai/chat/completions

Walks: create gateway "tutorial" → get → list (search, pagination) → update (2 per 60 s) →
3 chat completions on the data plane (the third must be 429) → logs list/get/edit/request/
response → logs delete by filter (success eq false) → gateway delete → get is a 404.
Prints one JSON summary as the last line of stdout; exits 1 with `FAIL: …` on stderr (and
`"ok": false` in the summary) on any mismatch.
"""
import json
import sys
import time
import traceback
import urllib.error
import urllib.request
from datetime import datetime

import cloudflare
from cloudflare import Cloudflare

if len(sys.argv) != 5:
    sys.exit(__doc__)
BASE_URL, TOKEN, ACCOUNT, PREFIX = sys.argv[1:5]
GW = "tutorial"
HTTP_TIMEOUT = 15.0

summary = {"ok": False, "sdk_version": cloudflare.__version__, "step": None}


class Mismatch(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Mismatch(msg)


def step(name):
    summary["step"] = name


# max_retries=0: the SDK otherwise retries 409/429/5xx twice with backoff, which hides errors
# and slows the run.
cf = Cloudflare(api_token=TOKEN, base_url=BASE_URL, timeout=HTTP_TIMEOUT, max_retries=0)
gws = cf.ai_gateway
logs = cf.ai_gateway.logs


def extra(model):
    return dict(getattr(model, "model_extra", None) or {})


def gateway_fields(g):
    return {k: getattr(g, k, None) for k in (
        "id", "cache_ttl", "cache_invalidate_on_update", "collect_logs",
        "rate_limiting_interval", "rate_limiting_limit", "rate_limiting_technique")}


def check_gateway(g, where, **want):
    check(g is not None, f"{where}: no gateway in the response (missing `result`?)")
    check(getattr(g, "id", None) == GW, f"{where}: id {getattr(g, 'id', None)!r} != {GW!r}")
    for field in ("created_at", "modified_at"):
        v = getattr(g, field, None)
        check(isinstance(v, datetime),
              f"{where}: {field} should be an RFC 3339 date-time the SDK parses, got {v!r}")
    for k, v in want.items():
        got = getattr(g, k, None)
        check(got == v, f"{where}: {k} is {got!r}, expected {v!r} (gateway: {gateway_fields(g)})")


def expect_status_error(fn, statuses, where):
    """Calls fn, which must raise an APIStatusError with one of `statuses`; returns the error."""
    try:
        fn()
    except cloudflare.APIStatusError as e:
        check(e.status_code in statuses,
              f"{where}: status {e.status_code}, expected one of {statuses}: {e.message}")
        return e
    raise Mismatch(f"{where}: expected an error with status in {statuses}, the call succeeded")


def chat(n):
    """One chat completion through the data plane; returns (status, headers, body text)."""
    body = json.dumps({"model": "gpt-4o-mini",
                       # distinct prompts so that the cache (cache_ttl > 0) serves none of them
                       "messages": [{"role": "user", "content": f"hi {n}"}]}).encode()
    req = urllib.request.Request(
        f"{PREFIX}/{GW}/openai/chat/completions", data=body, method="POST",
        headers={"content-type": "application/json", "authorization": "Bearer sk-test"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode("utf-8", "replace")


def list_logs(**params):
    """First page of the gateway's logs (no auto-pagination)."""
    page = logs.list(GW, account_id=ACCOUNT, per_page=50, **params)
    check(isinstance(page.result, list), f"logs.list: `result` should be an array, got {page.result!r}")
    return page


def check_log(entry, where):
    for field, typ in (("id", str), ("created_at", datetime), ("success", bool), ("cached", bool),
                       ("provider", str), ("model", str), ("path", str), ("duration", int)):
        v = getattr(entry, field, None)
        check(isinstance(v, typ) and not (typ is int and isinstance(v, bool)),
              f"{where}: log field {field} should be {typ.__name__}, got {v!r}")


def main():
    # Authentication: a wrong token is refused.
    step("bad token")
    bad = Cloudflare(api_token="not-the-admin-token", base_url=BASE_URL, timeout=HTTP_TIMEOUT,
                     max_retries=0)
    e = expect_status_error(lambda: bad.ai_gateway.list(account_id=ACCOUNT), (401, 403),
                            "ai_gateway.list with a wrong token")
    summary["bad_token"] = type(e).__name__

    # A leftover from an earlier run would make create fail.
    step("cleanup")
    try:
        gws.delete(GW, account_id=ACCOUNT)
    except cloudflare.NotFoundError:
        pass

    step("create")
    g = gws.create(account_id=ACCOUNT, id=GW, cache_invalidate_on_update=False, cache_ttl=300,
                   collect_logs=True, rate_limiting_interval=60, rate_limiting_limit=20,
                   rate_limiting_technique="fixed")
    check_gateway(g, "create", cache_ttl=300, collect_logs=True, rate_limiting_interval=60,
                  rate_limiting_limit=20, rate_limiting_technique="fixed")

    step("create duplicate")
    e = expect_status_error(
        lambda: gws.create(account_id=ACCOUNT, id=GW, cache_invalidate_on_update=False,
                           cache_ttl=None, collect_logs=True, rate_limiting_interval=None,
                           rate_limiting_limit=None),
        (400, 409, 422), "create of an existing id")
    summary["duplicate_create"] = [type(e).__name__, e.status_code]

    step("get")
    g = gws.get(GW, account_id=ACCOUNT)
    check_gateway(g, "get", cache_ttl=300, collect_logs=True, rate_limiting_interval=60,
                  rate_limiting_limit=20, rate_limiting_technique="fixed")

    step("list")
    page = gws.list(account_id=ACCOUNT, search="tutor", per_page=50)
    check(isinstance(page.result, list), f"list: `result` should be an array, got {page.result!r}")
    ids = [x.id for x in page.result]
    check(GW in ids, f"list(search='tutor'): {GW!r} not among {ids}")
    summary["list_result_info"] = page.result_info.to_dict() if page.result_info else None
    none = gws.list(account_id=ACCOUNT, search="no-such-gateway-zz9", per_page=50)
    check(GW not in [x.id for x in none.result],
          "list(search='no-such-gateway-zz9') returned the tutorial gateway (search ignored?)")
    # Auto-pagination asks for page=1,2,… until a page is empty; it must end.
    seen = []
    for i, x in enumerate(gws.list(account_id=ACCOUNT, per_page=1)):
        check(i < 200, "list auto-pagination did not end (is `page` honoured, and is a page "
                       "past the end an empty `result`?)")
        seen.append(x.id)
    check(seen.count(GW) == 1, f"paging with per_page=1 saw {GW!r} {seen.count(GW)} times: {seen}")
    check(len(seen) == len(set(seen)), f"paging with per_page=1 repeated gateways: {seen}")
    summary["gateways_paged"] = len(seen)

    step("update")
    g = gws.update(GW, account_id=ACCOUNT, cache_invalidate_on_update=False, cache_ttl=60,
                   collect_logs=True, rate_limiting_interval=60, rate_limiting_limit=2,
                   rate_limiting_technique="fixed")
    check_gateway(g, "update", cache_ttl=60, rate_limiting_interval=60, rate_limiting_limit=2)
    g = gws.get(GW, account_id=ACCOUNT)
    check_gateway(g, "get after update", cache_ttl=60, rate_limiting_interval=60,
                  rate_limiting_limit=2, rate_limiting_technique="fixed")

    step("data plane")
    statuses, log_ids = [], []
    for n in range(1, 4):
        status, headers, text = chat(n)
        statuses.append(status)
        log_ids.append(headers.get("cf-aig-log-id"))
        if n < 3:
            check(status == 200, f"chat {n}: status {status}, expected 200: {text[:300]}")
    check(statuses[2] == 429, f"chat 3: status {statuses[2]}, expected 429 (limit 2 per 60 s); "
                              f"statuses {statuses}")
    summary["chat_statuses"] = statuses

    step("logs.list")
    deadline = time.monotonic() + 5.0
    while True:
        page = list_logs()
        if len(page.result) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    entries = page.result
    check(len(entries) >= 3, f"logs.list: {len(entries)} entries after 5 s, expected >= 3")
    for entry in entries:
        check_log(entry, "logs.list")
    summary["logs_result_info"] = page.result_info.to_dict() if page.result_info else None
    ok = [x for x in entries if x.success]
    failed = [x for x in entries if not x.success]
    check(len(ok) >= 2, f"logs.list: {len(ok)} successful entries, expected >= 2")
    check(len(failed) >= 1, "logs.list: no entry with success=false (the 429)")
    for x in entries:
        check(x.provider == "openai", f"log {x.id}: provider {x.provider!r}, expected 'openai'")
    for x in ok:
        check(x.model == "gpt-4o-mini", f"log {x.id}: model {x.model!r}, expected 'gpt-4o-mini'")
    # Auto-pagination with one entry a page ends and sees each entry once.
    paged = []
    for i, x in enumerate(logs.list(GW, account_id=ACCOUNT, per_page=1)):
        check(i < 200, "logs.list auto-pagination did not end")
        paged.append(x.id)
    check(sorted(paged) == sorted(x.id for x in entries),
          f"logs paged one by one {paged} != first page {[x.id for x in entries]}")
    # Filters: the `success` parameter and a `filters` entry (sent as
    # filters.key=success&filters.operator=eq&filters.value=false).
    only_failed = list_logs(success=False).result
    check(sorted(x.id for x in only_failed) == sorted(x.id for x in failed),
          f"logs.list(success=False) gave {[x.id for x in only_failed]}, expected {[x.id for x in failed]}")
    only_failed = list_logs(filters=[{"key": "success", "operator": "eq", "value": [False]}]).result
    check(sorted(x.id for x in only_failed) == sorted(x.id for x in failed),
          f"logs.list(filters success eq false) gave {[x.id for x in only_failed]}, "
          f"expected {[x.id for x in failed]}")
    asc = list_logs(order_by="created_at", order_by_direction="asc").result
    check([x.created_at for x in asc] == sorted(x.created_at for x in asc),
          "logs.list(order_by=created_at, asc) is not in ascending order")

    step("logs.get")
    target = next((x for x in ok if x.id == log_ids[0]), ok[0]) if log_ids[0] else ok[0]
    summary["log_id_header_matches"] = bool(log_ids[0]) and any(x.id == log_ids[0] for x in entries)
    one = logs.get(target.id, account_id=ACCOUNT, gateway_id=GW)
    check_log(one, "logs.get")
    check(one.id == target.id, f"logs.get: id {one.id!r} != {target.id!r}")
    check(one.success is True, f"logs.get: success {one.success!r} for a 200")
    summary["log_get_status_code"] = getattr(one, "status_code", None)
    expect_status_error(lambda: logs.get("no-such-log-id", account_id=ACCOUNT, gateway_id=GW),
                        (404,), "logs.get of an unknown id")

    step("logs.edit")
    logs.edit(target.id, account_id=ACCOUNT, gateway_id=GW, feedback=1)
    after = logs.get(target.id, account_id=ACCOUNT, gateway_id=GW)
    if "feedback" in extra(after):
        check(extra(after)["feedback"] == 1, f"logs.get after edit: feedback {extra(after)['feedback']!r}")
    with_feedback = list_logs(feedback=1).result
    check(target.id in [x.id for x in with_feedback],
          f"logs.list(feedback=1) lacks the edited log {target.id}")
    check(len(with_feedback) < len(entries),
          f"logs.list(feedback=1) returned {len(with_feedback)} of {len(entries)} (filter ignored?)")

    step("logs.request/response")
    req = logs.request(target.id, account_id=ACCOUNT, gateway_id=GW)
    # Parsed JSON when the content type is JSON, else the text.
    check(isinstance(req, (dict, str)), f"logs.request: unexpected {type(req).__name__}")
    if isinstance(req, dict):
        check(req.get("model") == "gpt-4o-mini" and isinstance(req.get("messages"), list),
              f"logs.request: not the request body that was sent: {str(req)[:300]}")
    else:
        check("gpt-4o-mini" in req, f"logs.request: not the request body that was sent: {req[:300]}")
    resp = logs.response(target.id, account_id=ACCOUNT, gateway_id=GW)
    check(isinstance(resp, (dict, str)) and resp, f"logs.response: empty or unexpected {resp!r}")
    if isinstance(resp, dict):
        check("choices" in resp, f"logs.response: no `choices` in {str(resp)[:300]}")
    summary["log_request_type"] = type(req).__name__
    summary["log_response_type"] = type(resp).__name__

    step("logs.delete")
    before = len(list_logs().result)
    d = logs.delete(GW, account_id=ACCOUNT,
                    filters=[{"key": "success", "operator": "eq", "value": [False]}])
    check(getattr(d, "success", None) is True, f"logs.delete: success is {getattr(d, 'success', None)!r}")
    remaining = list_logs().result
    check(len(remaining) == before - len(failed),
          f"logs.delete(success eq false): {len(remaining)} entries left of {before}, "
          f"expected {before - len(failed)}")
    check(all(x.success for x in remaining), "logs.delete left an entry with success=false")
    summary["logs_before_delete"] = before
    summary["logs_after_delete"] = len(remaining)

    step("delete")
    deleted = gws.delete(GW, account_id=ACCOUNT)
    check(deleted is not None and getattr(deleted, "id", None) == GW,
          f"delete: the result should be the deleted gateway, got {deleted!r}")
    e = expect_status_error(lambda: gws.get(GW, account_id=ACCOUNT), (404,), "get after delete")
    check(isinstance(e, cloudflare.NotFoundError), f"get after delete raised {type(e).__name__}")
    summary["not_found_errors"] = [x.to_dict() for x in e.errors]
    check(GW not in [x.id for x in gws.list(account_id=ACCOUNT, search=GW).result],
          "list after delete still has the gateway")
    summary["step"] = "done"
    summary["ok"] = True


try:
    main()
except Mismatch as e:
    summary["error"] = str(e)
except cloudflare.APIStatusError as e:
    summary["error"] = f"{type(e).__name__} {e.status_code}: {e.message}"
except Exception as e:  # noqa: BLE001 — report which step broke, whatever broke it
    summary["error"] = f"{type(e).__name__}: {e}"
    traceback.print_exc()

print(json.dumps(summary, default=str))
if not summary["ok"]:
    print(f"FAIL at step {summary['step']!r}: {summary['error']}", file=sys.stderr)
    sys.exit(1)
