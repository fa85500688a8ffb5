"""Drives the gateway with the official OpenAI Python SDK, changing only base_url.

Usage: python openai_sdk.py BASE_URL
Prints one JSON line: the non-streamed reply, the streamed reply, chunk count.
"""
import json
import sys
import time

from openai import OpenAI

base_url = sys.argv[1]
client = OpenAI(base_url=base_url, api_key="sk-test-key-from-the-sdk")

completion = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "hello from the python sdk"}],
)

chunks = 0
streamed = ""
for chunk in client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "stream from the python sdk"}],
    stream=True,
    stream_options={"include_usage": True},
):
    chunks += 1
    if chunk.choices and chunk.choices[0].delta.content:
        streamed += chunk.choices[0].delta.content

# A provider that ends its body a while after `data: [DONE]` (real servers do, by a few ms);
# the SDK stops reading at [DONE]. The stream is still complete: logged so and cached.
late_request = dict(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "stream that ends late"}],
    stream=True,
    extra_headers={"x-mock-end-delay-ms": "300"},
)
late = "".join(
    c.choices[0].delta.content or ""
    for c in client.chat.completions.create(**late_request)
    if c.choices
)
time.sleep(0.8)
raw = client.chat.completions.with_raw_response.create(**late_request)
again = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)

print(json.dumps({
    "reply": completion.choices[0].message.content,
    "prompt_tokens": completion.usage.prompt_tokens,
    "streamed": streamed,
    "chunks": chunks,
    "late": late,
    "late_again": again,
    "late_again_cache": raw.headers.get("cf-aig-cache-status"),
}))
