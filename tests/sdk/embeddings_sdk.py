"""The official OpenAI SDK's embeddings at the compat endpoint, routed to OpenAI, to Gemini (its
OpenAI-compatible path) and to Cohere (v2 embed, translated both ways), with the SDK's default
encoding and with explicit floats.

Usage: python embeddings_sdk.py GATEWAY_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw)
Prints one JSON line with what each call returned.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=f"{sys.argv[1]}/compat", api_key="sk-embeddings-client", max_retries=0)
out = {}
for model in ["openai/text-embedding-3-small", "google-ai-studio/text-embedding-004", "cohere/embed-v4.0"]:
    r = client.embeddings.create(model=model, input=["the quick brown fox", "jumps"])
    out[model] = {
        "n": len(r.data),
        "first": [float(x) for x in r.data[0].embedding],
        "model": r.model,
        "usage": r.usage.prompt_tokens if r.usage else None,
    }
floats = client.embeddings.create(
    model="cohere/embed-v4.0", input=["the quick brown fox", "jumps"], encoding_format="float"
)
out["cohere_float"] = [float(x) for x in floats.data[0].embedding]
print(json.dumps(out))
