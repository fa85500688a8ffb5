"""The official OpenAI and Anthropic Python SDKs with a virtual key as their api_key, base URL
swapped, nothing else changed.

Usage: python virtual_keys.py GATEWAY_BASE VIRTUAL_KEY   (…/v1/{account}/{gateway})
Prints one JSON line: the replies.
"""
import json
import sys

from anthropic import Anthropic
from openai import OpenAI

base, key = sys.argv[1], sys.argv[2]
openai = OpenAI(base_url=f"{base}/openai", api_key=key)
anthropic = Anthropic(base_url=f"{base}/anthropic", api_key=key)

chat = openai.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "virtual key chat"}])
streamed = "".join(
    c.choices[0].delta.content or ""
    for c in openai.chat.completions.create(
        model="gpt-4o-mini", stream=True,
        messages=[{"role": "user", "content": "virtual key stream"}])
    if c.choices)
message = anthropic.messages.create(
    model="claude-3-5-haiku", max_tokens=32,
    messages=[{"role": "user", "content": "virtual key anthropic"}])
try:
    OpenAI(base_url=f"{base}/openai", api_key="aigw-not-a-real-key").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    refused = None
except Exception as e:  # the SDK raises AuthenticationError on 401
    refused = type(e).__name__

print(json.dumps({"chat": chat.choices[0].message.content, "streamed": streamed,
                  "anthropic": message.content[0].text, "refused": refused}))
