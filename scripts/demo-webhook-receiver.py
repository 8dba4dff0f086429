#!/usr/bin/env python3
"""The demo's webhook receiver: prints every notification central sends, after checking its
signature (X-Signature: v1=HMAC-SHA-256 of timestamp + "." + body) and its age, as a chain's
chat bot or ticket system would. Usage: demo-webhook-receiver.py PORT SECRET_FILE

It prints one JSON line when it listens (the demo waits for it), then one line per notification.
A notification whose signature does not verify is refused (401) and said so.
"""
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port = int(sys.argv[1])
with open(sys.argv[2], encoding="ascii") as f:
    secret = f.read().strip().encode()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(min(length, 1 << 20))
        stamp = self.headers.get("X-Onshi-Timestamp", "0")
        expected = "v1=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
        if not (fresh and hmac.compare_digest(expected, self.headers.get("X-Signature", ""))):
            print("refused: the signature does not verify (or the notice is too old)", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        note = json.loads(body)
        print(
            f"{note.get('event'):9} {note.get('kind')!s:28} site {note.get('site_code')} "
            f"— {note.get('detail')}",
            flush=True,
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
print(json.dumps({"webhook_receiver": f"http://127.0.0.1:{port}/"}), flush=True)
server.serve_forever()
