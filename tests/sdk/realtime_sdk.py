"""The official OpenAI SDK's Realtime client (`client.realtime.connect`, a WebSocket) through a
gateway's provider route to the mock's Realtime endpoint: a session update, two text turns, the
streamed text and each turn's `response.done` usage.

Usage: python realtime_sdk.py BASE_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw/openai)
Prints one JSON line with what the session returned.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="sk-realtime-client", max_retries=0)
out = {"turns": []}
prompts = ["hello realtime sdk", "and once more"]
with client.realtime.connect(model="gpt-realtime") as conn:
    conn.session.update(
        session={"type": "realtime", "instructions": "be brief", "output_modalities": ["text"]}
    )
    deltas = []
    for event in conn:
        if event.type == "session.updated":
            out["instructions"] = event.session.instructions
        elif event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.done":
            u = event.response.usage
            out["turns"].append(
                {"text": "".join(deltas), "input": u.input_tokens, "output": u.output_tokens}
            )
            deltas = []
        elif event.type == "error":
            out["error"] = event.error.message
            break
        else:
            continue
        if event.type in ("session.updated", "response.done"):
            if not prompts:
                break
            conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": prompts.pop(0)}],
                }
            )
            conn.response.create()
print(json.dumps(out))
