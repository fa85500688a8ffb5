"""Official SDKs against the gateway: the OpenAI SDK through the compat endpoint
to an Anthropic-shaped upstream, and the Anthropic SDK through passthrough.

Usage: python provider_sdks.py GATEWAY_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw)
Prints one JSON line with what each call returned.
"""
import json
import sys

import anthropic
from openai import OpenAI

gateway = sys.argv[1]
out = {}

openai_client = OpenAI(base_url=f"{gateway}/compat", api_key="sk-ant-through-compat")
completion = openai_client.chat.completions.create(
    model="anthropic/claude-3-5-haiku",
    messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "compat to claude"},
    ],
    max_tokens=64,
)
out["compat_reply"] = completion.choices[0].message.content
out["compat_finish"] = completion.choices[0].finish_reason
out["compat_tokens"] = completion.usage.completion_tokens

streamed = ""
for chunk in openai_client.chat.completions.create(
    model="anthropic/claude-3-5-haiku",
    messages=[{"role": "user", "content": "compat stream to claude"}],
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        streamed += chunk.choices[0].delta.content
out["compat_streamed"] = streamed

# The same compat endpoint to an OpenAI-shaped upstream.
to_openai = openai_client.chat.completions.create(
    model="openai/gpt-4o-mini",
    messages=[{"role": "user", "content": "compat to openai"}],
)
out["compat_openai_reply"] = to_openai.choices[0].message.content
out["compat_openai_model"] = to_openai.model
openai_streamed = ""
for chunk in openai_client.chat.completions.create(
    model="openai/gpt-4o-mini",
    messages=[{"role": "user", "content": "compat stream to openai"}],
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        openai_streamed += chunk.choices[0].delta.content
out["compat_openai_streamed"] = openai_streamed

claude = anthropic.Anthropic(base_url=f"{gateway}/anthropic", api_key="sk-ant-direct")
message = claude.messages.create(
    model="claude-3-5-haiku",
    max_tokens=64,
    messages=[{"role": "user", "content": "anthropic passthrough"}],
)
out["anthropic_reply"] = message.content[0].text
out["anthropic_tokens"] = message.usage.output_tokens

text = ""
with claude.messages.stream(
    model="claude-3-5-haiku",
    max_tokens=64,
    messages=[{"role": "user", "content": "anthropic stream"}],
) as stream:
    for piece in stream.text_stream:
        text += piece
out["anthropic_streamed"] = text

print(json.dumps(out))
