"""Bedrock through the gateway, signed by the gateway with its stored credentials (which the mock
checks as AWS would):
- boto3's bedrock-runtime `converse` through the aws-bedrock route. boto3 signs with
  credentials the gateway never uses (made for the gateway's address).
- the official OpenAI SDK at the compat endpoint with `aws-bedrock/…` models, translated to
  Converse / ConverseStream and back: text, stream with usage, a tool call and the turn after
  its result.

Usage: python bedrock_sdk.py GATEWAY_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw)
Prints one JSON line with what each call returned.
"""
import json
import sys

import boto3
from botocore.config import Config
from openai import OpenAI

client = boto3.client(
    "bedrock-runtime",
    region_name="us-east-1",
    endpoint_url=f"{sys.argv[1]}/aws-bedrock/bedrock-runtime/us-east-1",
    aws_access_key_id="AKIDCLIENTONLY",
    aws_secret_access_key="client-secret-the-gateway-replaces",
    config=Config(retries={"max_attempts": 1}),
)
r = client.converse(
    modelId="amazon.nova-lite-v1:0",
    system=[{"text": "be brief"}],
    messages=[{"role": "user", "content": [{"text": "hello from boto3"}]}],
    inferenceConfig={"maxTokens": 64},
)
out = {
    "text": r["output"]["message"]["content"][0]["text"],
    "stop": r["stopReason"],
    "input": r["usage"]["inputTokens"],
    "output": r["usage"]["outputTokens"],
}
oa = OpenAI(base_url=f"{sys.argv[1]}/compat", api_key="sk-ignored-by-bedrock", max_retries=0)
model = "aws-bedrock/amazon.nova-lite-v1:0"
c = oa.chat.completions.create(
    model=model, max_tokens=64,
    messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello bedrock through compat"}],
)
out["compat"] = {"text": c.choices[0].message.content, "finish": c.choices[0].finish_reason,
                 "in": c.usage.prompt_tokens, "out": c.usage.completion_tokens}
text, usage, finish = "", None, None
for chunk in oa.chat.completions.create(
    model=model, stream=True, stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "stream bedrock through compat"}],
):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["compat_stream"] = {"text": text, "finish": finish, "usage": usage}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
asked = [{"role": "user", "content": "weather in Paris?"}]
headers = {"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'}
c = oa.chat.completions.create(model=model, messages=asked, tools=tools, extra_headers=headers)
call = c.choices[0].message.tool_calls[0]
out["compat_tool"] = {"name": call.function.name, "args": json.loads(call.function.arguments),
                      "finish": c.choices[0].finish_reason}
args, name = "", None
for chunk in oa.chat.completions.create(model=model, messages=asked, tools=tools, extra_headers=headers, stream=True):
    for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        name = d.function.name or name
        args += d.function.arguments or ""
out["compat_stream_tool"] = {"name": name, "args": json.loads(args)}
c = oa.chat.completions.create(
    model=model, tools=tools, extra_headers=headers,
    messages=asked + [c.choices[0].message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"}],
)
out["compat_after_tool"] = c.choices[0].message.content
import anthropic

ac = anthropic.Anthropic(base_url=f"{sys.argv[1]}/compat", api_key="sk-ignored-by-bedrock", max_retries=0)
m = ac.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hello messages"}])
out["messages"] = {"text": m.content[0].text, "stop": m.stop_reason, "in": m.usage.input_tokens}
with ac.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "stream messages"}]) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
out["messages_stream"] = {"text": streamed, "stop": final.stop_reason, "out": final.usage.output_tokens}
print(json.dumps(out))
