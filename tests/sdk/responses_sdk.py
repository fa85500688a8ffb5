"""The official OpenAI SDK's Responses API against the compat endpoint, with an Anthropic model
(translated to a chat completion, then to Anthropic Messages, and back) and an OpenAI model
(passed through).

Usage: python responses_sdk.py GATEWAY_URL KEPT_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw; KEPT_URL
is a gateway with store_responses, where a tool call's output continues it by previous_response_id)
Prints one JSON line with what each call returned or raised.
"""
import json
import sys

import openai
from openai import OpenAI

gateway = sys.argv[1]
out = {}
client = OpenAI(base_url=f"{gateway}/compat", api_key="sk-ant-through-responses", max_retries=0)

r = client.responses.create(
    model="anthropic/claude-3-5-haiku",
    instructions="You are terse.",
    input="hello through responses",
    max_output_tokens=100,
)
out["text"] = r.output_text
out["status"] = r.status
out["usage"] = {"input": r.usage.input_tokens, "output": r.usage.output_tokens}

deltas = []
final = None
for event in client.responses.create(
    model="anthropic/claude-3-5-haiku",
    input="stream through responses",
    stream=True,
):
    if event.type == "response.output_text.delta":
        deltas.append(event.delta)
    elif event.type == "response.completed":
        final = event.response
out["streamed"] = "".join(deltas)
out["stream_final"] = final.output_text if final else None
out["stream_usage"] = final.usage.output_tokens if final else None

tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
call_headers = {"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'}
r = client.responses.create(
    model="anthropic/claude-3-5-haiku",
    input="weather in Paris?",
    tools=tools,
    extra_headers=call_headers,
)
call = next(item for item in r.output if item.type == "function_call")
out["tool"] = {"name": call.name, "arguments": json.loads(call.arguments), "call_id": call.call_id}

args = []
final = None
for event in client.responses.create(
    model="anthropic/claude-3-5-haiku",
    input="weather in Paris, streamed?",
    tools=tools,
    stream=True,
    extra_headers=call_headers,
):
    if event.type == "response.function_call_arguments.delta":
        args.append(event.delta)
    elif event.type == "response.completed":
        final = event.response
streamed_call = next(item for item in final.output if item.type == "function_call")
out["stream_tool"] = {"name": streamed_call.name, "arguments": json.loads("".join(args)),
                      "final_arguments": json.loads(streamed_call.arguments)}

r = client.responses.create(
    model="anthropic/claude-3-5-haiku",
    input=[
        {"role": "user", "content": "weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": "get_weather", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"},
    ],
    tools=tools,
)
out["after_tool"] = r.output_text

r = client.responses.create(model="openai/gpt-4o-mini", input="hello openai through compat responses")
out["openai"] = r.output_text

# An OpenAI-compatible provider (translated to its chat completions): a streamed function call.
args, final = [], None
for event in client.responses.create(model="groq/llama-3.1-8b-instant", input="weather, via groq?",
                                     tools=tools, stream=True, extra_headers=call_headers):
    if event.type == "response.function_call_arguments.delta":
        args.append(event.delta)
    elif event.type == "response.completed":
        final = event.response
out["compat_stream_tool"] = {"arguments": json.loads("".join(args)),
                             "final": [item.type for item in final.output] if final else None}

try:
    client.responses.create(model="anthropic/claude-3-5-haiku", input="again", previous_response_id="resp_1")
    out["stateful"] = "not raised"
except openai.BadRequestError as e:
    out["stateful"] = {"status": e.status_code, "message": str(e.message)}

kept = OpenAI(base_url=f"{sys.argv[2]}/compat", api_key="sk-ant-kept", max_retries=0)
first = kept.responses.create(
    model="anthropic/claude-3-5-haiku",
    input="weather in Paris?",
    tools=tools,
    extra_headers=call_headers,
)
kept_call = next(item for item in first.output if item.type == "function_call")
follow = kept.responses.create(
    model="anthropic/claude-3-5-haiku",
    previous_response_id=first.id,
    input=[{"type": "function_call_output", "call_id": kept_call.call_id, "output": "21 degrees"}],
    tools=tools,
)
out["continued"] = {"text": follow.output_text, "previous": follow.previous_response_id,
                    "first_id": first.id, "first_store": first.store}

print(json.dumps(out))
