"""Google's google-genai SDK's Live client (`client.aio.live.connect`) through the gateway's
`google-ai-studio` route: the setup, two text turns and their usage.

Given an API key, the SDK always connects with TLS (`wss://`), so this script puts a small TLS
front (a self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE, which the SDK
reads) before the gateway's plain listener and points the SDK at it. The SDK itself is not
changed.

Usage: python gemini_live_sdk.py GATEWAY_URL   (e.g. http://127.0.0.1:8787/v1/acct/gw)
Prints one JSON line with what the session returned.
"""
import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import sys
import tempfile
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

gateway = urlparse(sys.argv[1])


def self_signed(folder):
    """A certificate and key for 127.0.0.1, written to `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def forward(client_reader, client_writer):
    """One TLS connection, relayed to the gateway's plain listener."""
    up_reader, up_writer = await asyncio.open_connection(gateway.hostname, gateway.port)
    await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))


async def main():
    folder = tempfile.mkdtemp()
    cert_path, key_path = self_signed(folder)
    os.environ["SSL_CERT_FILE"] = cert_path
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_path, key_path)
    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]

    from google import genai

    client = genai.Client(api_key="goog-live-client", http_options={
        "base_url": f"https://127.0.0.1:{port}{gateway.path}/google-ai-studio", "api_version": "v1beta"})
    out = {"turns": []}
    async with client.aio.live.connect(model="gemini-2.0-flash",
                                       config={"response_modalities": ["TEXT"]}) as session:
        for prompt in ["hello live sdk", "and once more"]:
            await session.send_client_content(
                turns={"role": "user", "parts": [{"text": prompt}]}, turn_complete=True)
            text, usage = [], None
            async for message in session.receive():
                if message.text:
                    text.append(message.text)
                if message.usage_metadata:
                    usage = {"prompt": message.usage_metadata.prompt_token_count,
                             "response": message.usage_metadata.response_token_count}
                if message.server_content and message.server_content.turn_complete:
                    break
            out["turns"].append({"text": "".join(text), "usage": usage})
    server.close()
    print(json.dumps(out))


asyncio.run(main())
