"""The official Anthropic SDK against the compat endpoint's Messages entry point, with models
of an OpenAI-shaped provider (translated both ways) and of Anthropic (passed through).

Usage: python messages_sdk.py GATEWAY_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw)
Prints one JSON line with what each call returned or raised.
"""
import json
import sys

import anthropic

gateway = sys.argv[1]
out = {}
client = anthropic.Anthropic(base_url=f"{gateway}/compat", api_key="sk-openai-through-messages", max_retries=0)

msg = client.messages.create(
    model="openai/gpt-4o-mini",
    max_tokens=100,
    system="You are terse.",
    messages=[{"role": "user", "content": "hello through messages"}],
)
out["text"] = msg.content[0].text
out["stop_reason"] = msg.stop_reason
out["usage"] = {"input": msg.usage.input_tokens, "output": msg.usage.output_tokens}

with client.messages.stream(
    model="openai/gpt-4o-mini",
    max_tokens=100,
    messages=[{"role": "user", "content": "stream through messages"}],
) as s:
    out["streamed"] = "".join(s.text_stream)
    final = s.get_final_message()
out["stream_stop_reason"] = final.stop_reason
out["stream_usage"] = {"input": final.usage.input_tokens, "output": final.usage.output_tokens}

tools = [{
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
call_headers = {"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'}
msg = client.messages.create(
    model="openai/gpt-4o-mini",
    max_tokens=100,
    tools=tools,
    messages=[{"role": "user", "content": "weather in Paris?"}],
    extra_headers=call_headers,
)
tool_use = next(b for b in msg.content if b.type == "tool_use")
out["tool"] = {"name": tool_use.name, "input": tool_use.input, "stop_reason": msg.stop_reason}

with client.messages.stream(
    model="openai/gpt-4o-mini",
    max_tokens=100,
    tools=tools,
    messages=[{"role": "user", "content": "weather in Paris, streamed?"}],
    extra_headers=call_headers,
) as s:
    final = s.get_final_message()
streamed_tool = next(b for b in final.content if b.type == "tool_use")
out["stream_tool"] = {"name": streamed_tool.name, "input": streamed_tool.input, "stop_reason": final.stop_reason}

# The tool's result goes back; the model answers in text.
msg = client.messages.create(
    model="openai/gpt-4o-mini",
    max_tokens=100,
    tools=tools,
    messages=[
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use.id, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18 degrees and sunny"}]},
    ],
)
out["after_tool"] = msg.content[0].text

# Anthropic models pass through unchanged.
msg = client.messages.create(
    model="anthropic/claude-3-5-haiku",
    max_tokens=100,
    messages=[{"role": "user", "content": "hello claude through compat"}],
)
out["claude"] = msg.content[0].text
with client.messages.stream(
    model="anthropic/claude-3-5-haiku",
    max_tokens=100,
    messages=[{"role": "user", "content": "stream claude through compat"}],
) as s:
    out["claude_streamed"] = "".join(s.text_stream)

# A provider's error comes back as the SDK's error for its status.
try:
    client.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=10,
        messages=[{"role": "user", "content": "fail please"}],
        extra_headers={"x-mock-status": "429"},
    )
    out["error"] = "not raised"
except anthropic.RateLimitError as e:
    out["error"] = {"type": type(e).__name__, "status": e.status_code, "message": str(e.message)}

print(json.dumps(out))
