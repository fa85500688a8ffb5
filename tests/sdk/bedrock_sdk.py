"""boto3's bedrock-runtime `converse` through the gateway's aws-bedrock route. boto3 signs with
credentials the gateway never uses (made for the gateway's address); the gateway signs again
with its stored ones, which the mock checks as AWS would.

Usage: python bedrock_sdk.py ENDPOINT_URL
  (e.g. http://127.0.0.1:8787/v1/acct/gw/aws-bedrock/bedrock-runtime/us-east-1)
Prints one JSON line with what the call returned.
"""
import json
import sys

import boto3
from botocore.config import Config

client = boto3.client(
    "bedrock-runtime",
    region_name="us-east-1",
    endpoint_url=sys.argv[1],
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
print(json.dumps({
    "text": r["output"]["message"]["content"][0]["text"],
    "stop": r["stopReason"],
    "input": r["usage"]["inputTokens"],
    "output": r["usage"]["outputTokens"],
}))
