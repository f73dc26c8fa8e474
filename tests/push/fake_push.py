"""A fake Web Push service (RFC 8030) for the push tests: it hands out subscriptions (a
P-256 key pair and an auth secret per subscription, as a browser would make), then for each
push it receives verifies the VAPID header (RFC 8292: an ES256 JWT whose `aud` is this
service's origin and whose `exp` is in the future and within 24 hours, signed by the key in
`k`) and decrypts the body (RFC 8291, aes128gcm) with the third-party `http_ece` package.

  POST /subscribe           -> {"id", "endpoint", "p256dh", "auth"}
  POST /control/<id>        {"status": 410, "retry_after": 2, "times": 1}: the next `times`
                            pushes to <id> are answered `status` (with Retry-After)
  POST /push/<id>           a push
  GET  /received            {"delivered": [...], "answered": [...], "errors": [...]}

Prints "listening <port>" once it accepts connections.
"""

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

LOCK = threading.Lock()
SUBS = {}
CONTROL = {}
DELIVERED = []
ANSWERED = []
ERRORS = []


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify_vapid(header, origin):
    """The claims of a valid VAPID header, or raises ValueError saying what is wrong."""
    if not header.startswith("vapid "):
        raise ValueError("not a vapid authorization: " + header[:20])
    params = dict(p.strip().split("=", 1) for p in header[6:].split(","))
    token, key = params["t"], params["k"]
    head_b64, claims_b64, sig_b64 = token.split(".")
    head = json.loads(b64d(head_b64))
    if head.get("alg") != "ES256":
        raise ValueError("alg is not ES256")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
    sig = b64d(sig_b64)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        public.verify(der, (head_b64 + "." + claims_b64).encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("bad signature")
    claims = json.loads(b64d(claims_b64))
    now = time.time()
    if claims.get("aud") != origin:
        raise ValueError("aud %r is not %r" % (claims.get("aud"), origin))
    if not (now < claims["exp"] <= now + 24 * 3600):
        raise ValueError("exp is not within 24 hours")
    if not claims.get("sub"):
        raise ValueError("no sub")
    return claims, key


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        if self.path == "/received":
            with LOCK:
                out = {"delivered": DELIVERED, "answered": ANSWERED, "errors": ERRORS}
                data = json.dumps(out).encode()
            return self.answer(200, data, [("Content-Type", "application/json")])
        self.answer(404)

    def do_POST(self):
        port = self.server.server_address[1]
        origin = "http://127.0.0.1:%d" % port
        body = self.body()
        if self.path == "/subscribe":
            key = ec.generate_private_key(ec.SECP256R1())
            auth = __import__("os").urandom(16)
            sid = "s%d" % (len(SUBS) + 1)
            point = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            with LOCK:
                SUBS[sid] = (key, auth)
            out = {"id": sid, "endpoint": origin + "/push/" + sid, "p256dh": b64e(point), "auth": b64e(auth)}
            return self.answer(200, json.dumps(out).encode(), [("Content-Type", "application/json")])
        if self.path.startswith("/control/"):
            with LOCK:
                CONTROL[self.path[len("/control/"):]] = json.loads(body)
            return self.answer(204)
        if self.path.startswith("/push/"):
            sid = self.path[len("/push/"):]
            with LOCK:
                sub = SUBS.get(sid)
                control = CONTROL.get(sid)
                if control and control.get("times", 1) > 0:
                    control["times"] = control.get("times", 1) - 1
                else:
                    control = None
            if sub is None:
                return self.answer(404)
            try:
                claims, k = verify_vapid(self.headers.get("Authorization", ""), origin)
                if self.headers.get("Content-Encoding") != "aes128gcm":
                    raise ValueError("Content-Encoding is not aes128gcm")
                if self.headers.get("TTL") is None:
                    raise ValueError("no TTL")
                plain = http_ece.decrypt(body, private_key=sub[0], auth_secret=sub[1], version="aes128gcm")
                payload = json.loads(plain)
            except Exception as e:  # noqa: BLE001 - every failure is reported to the test
                with LOCK:
                    ERRORS.append({"id": sid, "error": str(e)})
                return self.answer(400, str(e).encode())
            record = {
                "id": sid,
                "at": time.time(),
                "payload": payload,
                "ttl": self.headers.get("TTL"),
                "urgency": self.headers.get("Urgency"),
                "topic": self.headers.get("Topic"),
                "vapid_key": k,
                "aud": claims["aud"],
                "exp": claims["exp"],
            }
            if control:
                status = control["status"]
                headers = []
                if control.get("retry_after") is not None:
                    headers.append(("Retry-After", str(control["retry_after"])))
                with LOCK:
                    ANSWERED.append(dict(record, status=status))
                return self.answer(status, b"", headers)
            with LOCK:
                DELIVERED.append(record)
            return self.answer(201, b"", [("Location", origin + "/message/%d" % len(DELIVERED))])
        self.answer(404)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
