"""A tiny aigw filter in Python, built with componentize-py (see build.sh).

It proves the `filter-plugin` contract (wit/0.1.0/filter.wit) is language-neutral:

* `configure` accepts one optional string key, `tag`;
* `on-request-headers` answers 403 JSON when the request has `x-block-me`,
  otherwise sets the request header `x-python-filter: <tag or "on">` and adds 1
  to the `python_calls` counter;
* `on-response-headers` sets the response header `x-python-filter: seen`.

componentize-py generates the `wit_world` package at build time; the exported
interface `filter` is implemented by the class `Filter` below (the class name
is the interface name in PascalCase). A fresh `Filter()` may be created for
every call, so per-request state lives at module level and `configure`
resets it (the host calls `configure` before every request).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import telemetry
from wit_world.imports.types import (
    BodyDecision_Continue,
    BodyMode_Ignore,
    ChunkDecision_Continue,
    Decision,
    Decision_Continue,
    Decision_Respond,
    FilterInfo,
    Header,
    HeaderEdits,
    Hooks,
    LocalResponse,
    RequestHead,
    ResponseDecision,
    ResponseDecision_Continue,
    ResponseHead,
    Summary,
    BodyDecision,
    ChunkDecision,
)

# Per-request state, rebuilt by `configure`.
_tag = "on"

_BLOCKED_BODY = json.dumps(
    {"error": {"message": "blocked by python filter"}}, separators=(",", ":")
).encode()


class Filter(exports.Filter):
    def describe(self) -> FilterInfo:
        return FilterInfo(
            hooks=Hooks.REQUEST_HEADERS | Hooks.RESPONSE_HEADERS,
            request_body=BodyMode_Ignore(),
            response_body=BodyMode_Ignore(),
        )

    def configure(self, config_json: str) -> None:
        # Raising Err(message) returns `result::err(message)`: the host
        # rejects the configuration with that message.
        global _tag
        try:
            config = json.loads(config_json)
        except ValueError as e:
            raise Err(f"invalid JSON configuration: {e}")
        if not isinstance(config, dict):
            raise Err("configuration must be a table")
        for key, value in config.items():
            if key != "tag":
                raise Err(f"unknown key `{key}` (expected only `tag`)")
            if not isinstance(value, str):
                raise Err(f"`tag` must be a string, got {type(value).__name__}")
        _tag = config.get("tag", "on")

    def on_request_headers(self, request: RequestHead) -> Decision:
        telemetry.counter_add("python_calls", 1)
        # Header names arrive lower-case.
        if any(h.name == "x-block-me" for h in request.headers):
            return Decision_Respond(
                LocalResponse(
                    status=403,
                    headers=[Header("content-type", "application/json")],
                    body=_BLOCKED_BODY,
                )
            )
        return Decision_Continue(
            HeaderEdits(set=[Header("x-python-filter", _tag)], remove=[])
        )

    def on_request_body(self, body: bytes) -> BodyDecision:
        return BodyDecision_Continue()

    def on_response_headers(self, response: ResponseHead) -> ResponseDecision:
        return ResponseDecision_Continue(
            HeaderEdits(set=[Header("x-python-filter", "seen")], remove=[])
        )

    def on_response_body(self, chunk: bytes, end_of_stream: bool) -> ChunkDecision:
        return ChunkDecision_Continue()

    def on_done(self, summary: Summary) -> None:
        return None
