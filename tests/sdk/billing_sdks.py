"""The official OpenAI and Anthropic Python SDKs on every API the gateway bills, base URL
swapped: Responses (JSON and stream), embeddings, image generation, and an Anthropic answer
with prompt-cache reads and writes.

Usage: python billing_sdks.py GATEWAY_BASE   (…/v1/{account}/{gateway})
Prints one JSON line: each call's usage as the SDK parsed it, by name.
"""
import json
import sys

from anthropic import Anthropic
from openai import OpenAI

base = sys.argv[1]
openai = OpenAI(base_url=f"{base}/openai", api_key="sk-openai-billing")
anthropic = Anthropic(base_url=f"{base}/anthropic", api_key="sk-ant-billing")
out = {}

r = openai.responses.create(model="gpt-4o-mini", input="bill this response",
                            extra_headers={"x-mock-cached-tokens": "2"})
out["responses_json"] = {"text": r.output_text, "usage": r.usage.model_dump()}

completed = None
text = ""
with openai.responses.stream(model="gpt-4o-mini", input="bill this streamed response") as s:
    for event in s:
        if event.type == "response.output_text.delta":
            text += event.delta
    completed = s.get_final_response()
out["responses_stream"] = {"text": text, "usage": completed.usage.model_dump()}

e = openai.embeddings.create(model="text-embedding-3-small", input=["one two three", "four five"])
out["embeddings"] = {"vectors": len(e.data), "usage": e.usage.model_dump()}

img = openai.images.generate(model="gpt-image-1", prompt="a lighthouse at dusk", n=1,
                             quality="low")
out["images"] = {"images": len(img.data), "b64": len(img.data[0].b64_json),
                 "usage": img.usage.model_dump()}

m = anthropic.messages.create(
    model="claude-3-5-haiku", max_tokens=64,
    messages=[{"role": "user", "content": "anthropic bills cache reads apart"}],
    extra_headers={"x-mock-cached-tokens": "3"},
)
out["anthropic"] = {"text": m.content[0].text, "usage": m.usage.model_dump()}

print(json.dumps(out))
