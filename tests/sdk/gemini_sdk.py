"""Google's official google-genai SDK through the gateway's google-ai-studio route (passthrough):
a generation, a stream and a function call, with the mock's Gemini API behind it.

Usage: python gemini_sdk.py BASE_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw/google-ai-studio)
Prints one JSON line with what each call returned.
"""
import json
import sys

from google import genai
from google.genai import types

client = genai.Client(api_key="goog-client-key", http_options=types.HttpOptions(base_url=sys.argv[1]))
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
print(json.dumps(out))
