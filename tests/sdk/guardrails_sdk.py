"""The official OpenAI and Anthropic SDKs against a gateway with the guardrails filter.

Usage: python guardrails_sdk.py GATEWAY_URL [CLOSED_URL OPEN_URL]
  (e.g. http://127.0.0.1:8787/v1/acct/gw); CLOSED_URL and OPEN_URL are gateways whose classifier
  times out, with on_error = "closed" and "open".
Prints one JSON line with what each call returned or raised.
"""
import json
import sys

import anthropic
import openai
from openai import OpenAI

gateway = sys.argv[1]
out = {}
client = OpenAI(base_url=f"{gateway}/openai", api_key="sk-test", max_retries=0)

# A flagged prompt passes; the flags come back in a header.
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "you mock-flag:harassment fool"}],
)
out["flagged_reply"] = raw.parse().choices[0].message.content
out["flagged_header"] = raw.headers.get("aigw-guardrails")

# A blocked prompt is an APIStatusError with status 424 and code 2016.
try:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "mock-flag:violence"}],
    )
    out["blocked"] = "not raised"
except openai.APIStatusError as e:
    out["blocked"] = {"status": e.status_code, "code": e.code, "message": str(e.message)}

# A stream whose 5th window is unsafe raises mid-stream, after the first windows arrived.
words = [f"word{i:02}" for i in range(80)]
words[60] = "mock-flag:violence"
received = ""
try:
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "tell me a story"}],
        stream=True,
        extra_headers={"x-mock-reply": " ".join(words)},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            received += chunk.choices[0].delta.content
    out["stream_error"] = "not raised"
except openai.APIError as e:
    out["stream_error"] = {"type": type(e).__name__, "message": str(e.message), "code": e.code}
out["stream_received"] = received

# The Anthropic SDK: a blocked prompt, and a stream cut by an error event.
claude = anthropic.Anthropic(base_url=f"{gateway}/anthropic", api_key="sk-ant-test", max_retries=0)
try:
    claude.messages.create(
        model="claude-3-5-haiku",
        max_tokens=64,
        messages=[{"role": "user", "content": "mock-flag:violence"}],
    )
    out["anthropic_blocked"] = "not raised"
except anthropic.APIStatusError as e:
    out["anthropic_blocked"] = {"status": e.status_code, "type": type(e).__name__}
received = ""
try:
    with claude.messages.stream(
        model="claude-3-5-haiku",
        max_tokens=200,
        messages=[{"role": "user", "content": "tell me a story"}],
        extra_headers={"x-mock-reply": " ".join(words)},
    ) as s:
        for text in s.text_stream:
            received += text
    out["anthropic_stream_error"] = "not raised"
except anthropic.APIError as e:
    out["anthropic_stream_error"] = {"type": type(e).__name__, "message": str(e.message)}
out["anthropic_stream_received"] = received

# A classifier that does not answer in time (the mock waits 1.5 s): refused under "closed", let
# through under "open".
if len(sys.argv) > 3:
    slow = [{"role": "user", "content": "hello mock-delay-ms:1500"}]
    for name, url in [("closed", sys.argv[2]), ("open", sys.argv[3])]:
        c = OpenAI(base_url=f"{url}/openai", api_key="sk-test", max_retries=0)
        try:
            r = c.chat.completions.create(model="gpt-4o-mini", messages=slow)
            out[f"timeout_{name}"] = {"reply": r.choices[0].message.content}
        except openai.APIStatusError as e:
            out[f"timeout_{name}"] = {"status": e.status_code, "code": e.code, "message": str(e.message)}

print(json.dumps(out))
