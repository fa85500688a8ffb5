"""Drives the gateway with the official OpenAI Python SDK, changing only base_url.

Usage: python openai_sdk.py BASE_URL
Prints one JSON line: the non-streamed reply, the streamed reply, chunk count.
"""
import json
import sys

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

print(json.dumps({
    "reply": completion.choices[0].message.content,
    "prompt_tokens": completion.usage.prompt_tokens,
    "streamed": streamed,
    "chunks": chunks,
}))
