"""A real SMTP server for the notification test: aiosmtpd, STARTTLS required (the test PKI's
server certificate), on 127.0.0.1 and a free port.

Prints one JSON line when ready ({"port": N}), then one JSON line per mail received: sender,
recipients, the decoded subject and body, and whether the session was under TLS.
"""
import argparse
import asyncio
import email
import email.policy
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        line = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "body": message.get_content(),
            "tls": session.ssl is not None,
        }
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return "250 OK"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), require_starttls=True, tls_context=context, hostname="localhost"),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
