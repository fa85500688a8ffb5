"""Cohere's v2 chat through the gateway, with the clients users run: Cohere's own SDK on the
passthrough route (so the mock's shapes are the ones Cohere's SDK parses), and the OpenAI and
Anthropic SDKs at the compat endpoint with a `cohere/…` model (translated to v2 chat and back):
JSON, streams, a tool call (JSON and streamed arguments) and its result.

Usage: python cohere_sdk.py GATEWAY_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw)
Prints one JSON line with what each call returned.
"""
import json
import sys

import anthropic
import cohere
from openai import OpenAI

gateway = sys.argv[1]
out = {}
model = "command-a-03-2025"
call_headers = {"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'}

# Cohere's own SDK, passthrough.
co = cohere.ClientV2(api_key="co-client-key", base_url=f"{gateway}/cohere")
r = co.chat(model=model, messages=[{"role": "user", "content": "hello cohere sdk"}])
out["native"] = {"text": r.message.content[0].text, "finish": r.finish_reason,
                 "billed_in": r.usage.billed_units.input_tokens}
kinds, text = [], []
for event in co.chat_stream(model=model, messages=[{"role": "user", "content": "stream cohere sdk"}]):
    kinds.append(event.type)
    if event.type == "content-delta":
        text.append(event.delta.message.content.text)
    if event.type == "message-end":
        out["native_stream_finish"] = event.delta.finish_reason
        out["native_stream_billed_out"] = event.delta.usage.billed_units.output_tokens
out["native_stream"] = "".join(text)
out["native_stream_kinds"] = sorted(set(kinds))
tools_v2 = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
r = co.chat(model=model, messages=[{"role": "user", "content": "weather?"}], tools=tools_v2,
            request_options={"additional_headers": call_headers})
out["native_tool"] = {"name": r.message.tool_calls[0].function.name,
                      "arguments": json.loads(r.message.tool_calls[0].function.arguments),
                      "finish": r.finish_reason}

# The OpenAI SDK at the compat endpoint.
client = OpenAI(base_url=f"{gateway}/compat", api_key="co-client-key", max_retries=0)
r = client.chat.completions.create(model=f"cohere/{model}", messages=[
    {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello through compat"}])
out["openai"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                 "prompt_tokens": r.usage.prompt_tokens}
deltas, usage = [], None
for chunk in client.chat.completions.create(
        model=f"cohere/{model}", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream through compat"}]):
    if chunk.choices and chunk.choices[0].delta.content:
        deltas.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["openai_stream"] = {"text": "".join(deltas), "completion_tokens": usage}
tools = [{"type": "function", "function": tools_v2[0]["function"]}]
r = client.chat.completions.create(model=f"cohere/{model}", tools=tools, extra_headers=call_headers,
                                   messages=[{"role": "user", "content": "weather in Paris?"}])
call = r.choices[0].message.tool_calls[0]
out["openai_tool"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
                      "finish": r.choices[0].finish_reason}
args = []
for chunk in client.chat.completions.create(model=f"cohere/{model}", tools=tools, stream=True,
                                            extra_headers=call_headers,
                                            messages=[{"role": "user", "content": "weather, streamed?"}]):
    for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        if c.function and c.function.arguments:
            args.append(c.function.arguments)
out["openai_stream_tool"] = json.loads("".join(args))
r = client.chat.completions.create(model=f"cohere/{model}", tools=tools, extra_headers=call_headers, messages=[
    {"role": "user", "content": "weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"}])
out["openai_after_tool"] = r.choices[0].message.content

# The Anthropic SDK at the compat endpoint.
a = anthropic.Anthropic(base_url=f"{gateway}/compat", api_key="co-client-key", max_retries=0)
m = a.messages.create(model=f"cohere/{model}", max_tokens=100,
                      messages=[{"role": "user", "content": "hello from anthropic"}])
out["anthropic"] = {"text": m.content[0].text, "stop": m.stop_reason, "output_tokens": m.usage.output_tokens}

# The OpenAI Responses API at the compat endpoint.
resp = client.responses.create(model=f"cohere/{model}", input="hello from responses")
out["responses"] = {"text": resp.output_text, "status": resp.status}

print(json.dumps(out))
