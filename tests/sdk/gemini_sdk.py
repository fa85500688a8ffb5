"""Gemini through the gateway, with the mock's Gemini API behind it:
- Google's official google-genai SDK through the google-ai-studio route (passthrough): a
  generation, a stream and a function call;
- the official OpenAI SDK at the compat endpoint with `google-ai-studio/…` models, translated
  to generateContent / streamGenerateContent and back: text, stream with usage, a tool call
  and the turn after its result.

Usage: python gemini_sdk.py GATEWAY_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw)
Prints one JSON line with what each call returned.
"""
import json
import sys

from google import genai
from google.genai import types
from openai import OpenAI

gateway = sys.argv[1]
client = genai.Client(api_key="goog-client-key", http_options=types.HttpOptions(base_url=f"{gateway}/google-ai-studio"))
out = {}
r = client.models.generate_content(
    model="gemini-2.0-flash",
    contents="hello gemini passthrough",
    config=types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=64),
)
out["text"] = r.text
out["usage"] = {"in": r.usage_metadata.prompt_token_count, "out": r.usage_metadata.candidates_token_count}
out["streamed"] = "".join(
    c.text or "" for c in client.models.generate_content_stream(model="gemini-2.0-flash", contents="stream gemini please")
)
weather = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather",
    description="Weather of a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]),
)])
r = client.models.generate_content(
    model="gemini-2.0-flash",
    contents="what is the weather in Paris?",
    config=types.GenerateContentConfig(
        tools=[weather],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        http_options=types.HttpOptions(headers={"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'}),
    ),
)
call = r.function_calls[0]
out["call"] = {"name": call.name, "args": dict(call.args)}

oa = OpenAI(base_url=f"{gateway}/compat", api_key="goog-through-compat", max_retries=0)
r = oa.chat.completions.create(
    model="google-ai-studio/gemini-2.0-flash",
    messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello gemini through compat"}],
    max_tokens=64,
)
out["compat"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                 "in": r.usage.prompt_tokens, "out": r.usage.completion_tokens}
stream = oa.chat.completions.create(
    model="google-ai-studio/gemini-2.0-flash",
    messages=[{"role": "user", "content": "stream gemini through compat"}],
    stream=True,
    stream_options={"include_usage": True},
)
text, usage, finish = "", None, None
for chunk in stream:
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["compat_stream"] = {"text": text, "finish": finish, "usage": usage}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
asked = [{"role": "user", "content": "weather in Paris?"}]
r = oa.chat.completions.create(
    model="google-ai-studio/gemini-2.0-flash", messages=asked, tools=tools,
    extra_headers={"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'},
)
call = r.choices[0].message.tool_calls[0]
out["compat_tool"] = {"name": call.function.name, "args": json.loads(call.function.arguments),
                      "finish": r.choices[0].finish_reason}
r = oa.chat.completions.create(
    model="google-ai-studio/gemini-2.0-flash",
    messages=asked + [r.choices[0].message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": '{"temp": "18 degrees"}'}],
    tools=tools,
    extra_headers={"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'},
)
out["compat_after_tool"] = r.choices[0].message.content
resp = oa.responses.create(model="google-ai-studio/gemini-2.0-flash", input="hello responses to gemini")
out["compat_responses"] = {"text": resp.output_text, "status": resp.status, "in": resp.usage.input_tokens}
deltas, final = [], None
for e in oa.responses.create(model="google-ai-studio/gemini-2.0-flash", input="stream responses to gemini", stream=True):
    if e.type == "response.output_text.delta":
        deltas.append(e.delta)
    elif e.type == "response.completed":
        final = e.response
out["compat_responses_stream"] = {"text": "".join(deltas), "final": final.output_text if final else None}
resp = oa.responses.create(
    model="google-ai-studio/gemini-2.0-flash", input="weather in Paris, via responses?",
    tools=[{"type": "function", "name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
    extra_headers={"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Paris"}'},
)
rcall = next(i for i in resp.output if i.type == "function_call")
out["compat_responses_tool"] = {"name": rcall.name, "arguments": json.loads(rcall.arguments)}
import anthropic

ac = anthropic.Anthropic(base_url=f"{sys.argv[1]}/compat", api_key="goog-through-messages", max_retries=0)
m = ac.messages.create(model="google-ai-studio/gemini-2.0-flash", max_tokens=64, messages=[{"role": "user", "content": "hello messages"}])
out["messages"] = {"text": m.content[0].text, "stop": m.stop_reason, "in": m.usage.input_tokens}
with ac.messages.stream(model="google-ai-studio/gemini-2.0-flash", max_tokens=64, messages=[{"role": "user", "content": "stream messages"}]) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
out["messages_stream"] = {"text": streamed, "stop": final.stop_reason, "out": final.usage.output_tokens}
print(json.dumps(out))
