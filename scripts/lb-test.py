#!/usr/bin/env python3
"""The load balancer of docker/ proven without a container engine (run by scripts/lb).

Debian's haproxy runs docker/haproxy.cfg, the file the compose stack mounts, unchanged (its
addresses come from the environment), in front of three `epop` instances on one PostgreSQL
and one Redis, with no signing key configured (they share the database's). Through the
balancer only:

- REST signs in, and calls spread over the replicas accept the token;
- the per-address limit holds across the replicas: public sign-in calls from one client
  address (forwarded by the balancer) are refused from about the 301st of a minute, not the
  901st;
- the cap on a user's event streams holds across the replicas: with ten open, spread over
  three replicas (none has more than four), the eleventh is refused (429);
- grpcurl (native gRPC over h2c) lists the services through reflection and calls GetMe;
- gRPC-Web over HTTP/1.1 calls GetMe (data and trailer frames) and gets UNAUTHENTICATED for
  a bad token;
- an SSE stream (`/api/events`): the replica serving it is killed with SIGKILL mid-stream; a
  message is sent while the stream is down; the stream reopened with `Last-Event-ID` gets it,
  and nothing twice;
- the killed replica is restarted and rejoins; then the same with a native gRPC stream read by
  grpcurl and resumed with `resume_cursor`;
- a rolling restart: each replica in turn is stopped gracefully (SIGTERM) and started again
  while a sender posts messages without pause (retrying a refused send with its idempotency
  key) and a follower reads the SSE stream (reopening it with `Last-Event-ID` when its
  replica stops): no send fails in a way a client cannot retry, and the follower gets every
  acknowledged message once, in order.

Standard library only. Usage:
  lb-test.py EPOP_BIN DATABASE_URL REDIS_URL GRPCURL HAPROXY_CFG
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

EPOP, DATABASE_URL, REDIS_URL, GRPCURL, CFG = sys.argv[1:6]
LB = 18500
PORTS = {"epop1": 18501, "epop2": 18502, "epop3": 18503}
ALL = set(PORTS)
PASSWORD = "lb-admin-password"
WORK = tempfile.mkdtemp(prefix="epop-lb-")
procs = {}


def log(line):
    print(f"lb: {line}", flush=True)


def wait(check, what, seconds=20.0):
    end = time.time() + seconds
    while time.time() < end:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException, AssertionError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"lb: timed out waiting for {what}")


def ready(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    c.request("GET", "/readyz")
    return c.getresponse().status == 200


def start(name):
    env = dict(
        os.environ,
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        EPOP_LISTEN=f"127.0.0.1:{PORTS[name]}",
        EPOP_DATA_DIR=os.path.join(WORK, name),
        EPOP_ADMIN_PASSWORD=PASSWORD,
        EPOP_SHUTDOWN_GRACE="1s",
        EPOP_REDIS_CHANNEL=f"epop-lb-{os.getpid()}",
        EPOP_TRUSTED_PROXIES="127.0.0.1",  # as compose.yaml trusts its balancer
    )
    env.pop("EPOP_JWT_SECRET", None)  # the instances share the database's keys
    out = open(os.path.join(WORK, f"{name}.log"), "ab")
    procs[name] = subprocess.Popen([EPOP], env=env, stdout=out, stderr=subprocess.STDOUT)
    wait(lambda: ready(PORTS[name]), f"{name} to be ready")


def kill(name):
    procs[name].kill()
    procs[name].wait()
    log(f"killed {name} with SIGKILL")


def call(method, path, body=None, token=None, headers=None):
    """One request through the balancer: (status, headers, body)."""
    c = http.client.HTTPConnection("127.0.0.1", LB, timeout=10)
    h = {"content-type": "application/json", **(headers or {})}
    if token:
        h["authorization"] = f"Bearer {token}"
    c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.headers, data


def backends(token, n=8):
    """The replicas that answered n calls."""
    seen = set()
    for _ in range(n):
        status, headers, _ = call("GET", "/api/users/me", token=token)
        assert status == 200, status
        seen.add(headers["x-epop-backend"])
    return seen


def send(conversation, text, token):
    """Sends through the balancer, retrying (same idempotency key) while a replica dies."""
    key = str(uuid.uuid4())
    body = {
        "content": {"type": "doc", "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}]},
        "idempotencyKey": key,
    }
    for _ in range(50):
        try:
            status, _, data = call("POST", f"/api/conversations/{conversation}/messages", body, token)
            if status == 200:
                return json.loads(data)
            if status not in (502, 503):
                raise SystemExit(f"lb: send answered {status}: {data!r}")
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise SystemExit("lb: a send never got through")


class Sse:
    """An SSE stream of /api/events through the balancer, read on a thread."""

    def __init__(self, token, last_event_id=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", LB, timeout=60)
        h = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
        if last_event_id:
            h["last-event-id"] = last_event_id
        self.conn.request("GET", "/api/events", headers=h)
        r = self.conn.getresponse()
        assert r.status == 200, r.status
        self.backend = r.headers["x-epop-backend"]
        self.events = []  # (id, data)
        self.ended = False
        threading.Thread(target=self.read, args=(r,), daemon=True).start()

    def read(self, r):
        event_id, data = None, None
        try:
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    self.events.append((event_id, data))
                    event_id, data = None, None
        except (OSError, http.client.HTTPException, ValueError, AttributeError):  # AttributeError: closed by us
            pass
        self.ended = True

    def texts(self):
        return [d["messageCreated"]["text"] for _, d in self.events if "messageCreated" in d]

    def cursor_of(self, text):
        return next(i for i, d in self.events if d.get("messageCreated", {}).get("text") == text)


class GrpcStream:
    """StreamEvents through the balancer, read by grpcurl (-v shows the response headers)."""

    def __init__(self, token, cursor=""):
        self.p = subprocess.Popen(
            [GRPCURL, "-plaintext", "-v", "-H", f"authorization: Bearer {token}",
             "-d", json.dumps({"resumeCursor": cursor}), f"127.0.0.1:{LB}",
             "epop.v1.ConversationService/StreamEvents"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.out = ""
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.p.stdout:
            self.out += line

    def backend(self):
        for line in self.out.splitlines():
            if line.startswith("x-epop-backend: "):
                return line.split(": ", 1)[1]
        return None

    def events(self):
        found, decoder = [], json.JSONDecoder()
        for part in self.out.split("Response contents:\n")[1:]:
            try:
                found.append(decoder.raw_decode(part)[0])
            except ValueError:
                pass  # not complete yet
        return found

    def texts(self):
        return [e["messageCreated"]["text"] for e in self.events() if "messageCreated" in e]

    def stop(self):
        self.p.kill()
        self.p.wait()


def main():
    for name in PORTS:
        start(name)
    env = dict(
        os.environ,
        EPOP_LB_BIND=f"127.0.0.1:{LB}",
        EPOP1_ADDR=f"127.0.0.1:{PORTS['epop1']}",
        EPOP2_ADDR=f"127.0.0.1:{PORTS['epop2']}",
        EPOP3_ADDR=f"127.0.0.1:{PORTS['epop3']}",
    )
    haproxy = subprocess.Popen(
        ["haproxy", "-db", "-f", CFG], env=env,
        stdout=open(os.path.join(WORK, "haproxy.log"), "wb"), stderr=subprocess.STDOUT,
    )
    try:
        wait(lambda: ready(LB), "the balancer")
        run()
    finally:
        haproxy.kill()
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.wait()


def run():
    # REST, spread over both replicas with one token.
    status, _, data = call("POST", "/api/auth/login", {"email": "admin@epop.local", "password": PASSWORD})
    assert status == 200, (status, data)
    token = json.loads(data)["accessToken"]
    wait(lambda: backends(token) == ALL, "calls spread over the replicas")
    log("REST: signed in; calls reached epop1, epop2 and epop3 with one token")
    address_limit(token)
    stream_cap(token)
    status, _, _ = call("GET", "/metrics")
    assert status == 403, status
    log("/metrics is refused through the balancer (403)")
    status, _, _ = call("GET", "/lb-health")
    assert status == 200, status
    log("the balancer's own healthcheck (/lb-health) answers 200 with replicas up")

    # Native gRPC (h2c) with grpcurl and reflection.
    listed = subprocess.run([GRPCURL, "-plaintext", f"127.0.0.1:{LB}", "list"], capture_output=True, text=True, check=True)
    assert "epop.v1.ConversationService" in listed.stdout.split(), listed.stdout
    me = subprocess.run(
        [GRPCURL, "-plaintext", "-H", f"authorization: Bearer {token}", f"127.0.0.1:{LB}", "epop.v1.UserService/GetMe"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(me.stdout)["email"] == "admin@epop.local", me.stdout
    log("gRPC: grpcurl listed the services through reflection and called GetMe")

    # gRPC-Web over HTTP/1.1: an empty GetMeRequest in one frame.
    status, headers, body = grpc_web(token)
    assert status == 200 and body[0] == 0 and b"admin@epop.local" in body, (status, body)
    trailer_at = 5 + int.from_bytes(body[1:5], "big")
    assert body[trailer_at] == 0x80 and b"grpc-status:0" in body[trailer_at + 5:], body
    status, headers, body = grpc_web("not-a-token")
    assert headers.get("grpc-status") == "16", dict(headers)
    log("gRPC-Web: GetMe over HTTP/1.1 (data and trailer frames); a bad token UNAUTHENTICATED")

    status, _, data = call("POST", "/api/conversations", {"kind": "CONVERSATION_KIND_GROUP", "title": "LB"}, token)
    assert status == 200, (status, data)
    conversation = json.loads(data)["id"]

    # SSE: kill the replica serving the stream, send while it is down, resume.
    sse = Sse(token)
    wait(lambda: sse.events, "the SSE stream to open")
    send(conversation, "s1", token)
    wait(lambda: "s1" in sse.texts(), "s1 on the SSE stream")
    killed = sse.backend
    kill(killed)
    wait(lambda: sse.ended, "the SSE stream to end")
    send(conversation, "s2", token)
    again = Sse(token, last_event_id=sse.cursor_of("s1"))
    send(conversation, "s3", token)
    wait(lambda: again.texts() == ["s2", "s3"], "s2 and s3 on the resumed SSE stream")
    assert again.backend != killed, again.backend
    log(f"SSE: {killed} killed mid-stream; resumed on {again.backend} with Last-Event-ID: s2 and s3 once, s1 not again")
    again.conn.close()

    start(killed)
    wait(lambda: backends(token) == ALL, f"{killed} to rejoin")
    log(f"{killed} restarted and back in rotation")

    # A native gRPC stream: the same, resumed with resume_cursor.
    stream = GrpcStream(token)
    wait(lambda: stream.events(), "the gRPC stream to open")
    send(conversation, "g1", token)
    wait(lambda: "g1" in stream.texts(), "g1 on the gRPC stream")
    killed = stream.backend()
    cursor = next(e["cursor"] for e in stream.events() if e.get("messageCreated", {}).get("text") == "g1")
    kill(killed)
    wait(lambda: stream.p.poll() is not None, "grpcurl to see the stream end")
    send(conversation, "g2", token)
    resumed = GrpcStream(token, cursor)
    send(conversation, "g3", token)
    wait(lambda: resumed.texts() == ["g2", "g3"], "g2 and g3 on the resumed gRPC stream")
    assert resumed.backend() != killed, resumed.backend()
    resumed.stop()
    log(f"gRPC stream: {killed} killed mid-stream; resumed on {resumed.backend()} with resume_cursor: g2 and g3 once")
    start(killed)
    wait(lambda: backends(token) == ALL, f"{killed} to rejoin")
    rolling_restart(token, conversation)


def address_limit(token):
    """The per-address limit of the public sign-in calls (300 a minute by default) holds
    across the replicas: calls from one client address, spread over all three, are refused
    from about the 301st (each replica alone would allow 300)."""
    seen, refused_at = set(), None
    body = {"email": "nobody@example.com"}
    for n in range(1, 500):
        # The balancer is a trusted proxy: the address it forwards is the client's.
        status, headers, _ = call("POST", "/api/auth/password-reset", body, headers={"x-forwarded-for": "203.0.113.9"})
        if status == 429:
            refused_at = n
            break
        assert status == 200, status
        seen.add(headers["x-epop-backend"])
    assert refused_at is not None and refused_at <= 330 and seen == ALL, (refused_at, seen)
    status, _, _ = call("GET", "/api/users/me", token=token)
    assert status == 200, status
    log(f"address limit: password-reset requests from one address over {sorted(seen)} refused from "
        f"call {refused_at} (300 a minute across the replicas); other addresses unaffected")


def stream_cap(token):
    """Ten streams (the default cap) spread over the replicas; the eleventh is refused."""
    streams = [Sse(token) for _ in range(10)]
    spread = {}
    for s in streams:
        spread[s.backend] = spread.get(s.backend, 0) + 1
    assert max(spread.values()) < 10, spread
    c = http.client.HTTPConnection("127.0.0.1", LB, timeout=10)
    c.request("GET", "/api/events", headers={"authorization": f"Bearer {token}", "accept": "text/event-stream"})
    r = c.getresponse()
    assert r.status == 429, r.status
    c.close()
    for s in streams:
        s.conn.close()
    # A replica learns that a stream's client went away when it next writes to it (a
    # heartbeat, every 15 s): then its place is free again.
    def reopens():
        s = Sse(token)
        s.conn.close()
        return True
    wait(reopens, "the closed streams' places to be given back", 40)
    log(f"stream cap: 10 streams open over the replicas {spread}; the 11th refused with 429; "
        "places given back once the replicas saw the streams closed")


class Follower:
    """Follows the SSE stream through the balancer, reopening it with Last-Event-ID."""

    def __init__(self, token):
        self.token, self.texts, self.last, self.reopened = token, [], None, 0
        self.done = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.done.is_set():
            try:
                s = Sse(self.token, last_event_id=self.last)
            except (AssertionError, OSError, http.client.HTTPException):
                time.sleep(0.2)
                continue
            seen = 0
            while True:
                ended = s.ended
                for event_id, data in s.events[seen:]:
                    seen += 1
                    if event_id:
                        self.last = event_id
                    if "messageCreated" in data:
                        self.texts.append(data["messageCreated"]["text"])
                if ended or self.done.is_set():
                    break
                time.sleep(0.05)
            s.conn.close()
            self.reopened += 1


def rolling_restart(token, conversation):
    """Each replica stopped gracefully and started again under a steady load."""
    follower = Follower(token)
    # Live from here on: a message sent now reaches the follower.
    wait(lambda: send(conversation, "warm", token) and time.sleep(0.3) is None and "warm" in follower.texts,
         "the follower to read the stream")
    acked, done = [], threading.Event()

    def load():
        i = 0
        while not done.is_set():
            send(conversation, f"r{i}", token)
            acked.append(f"r{i}")
            i += 1
            time.sleep(0.02)

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    started = time.time()
    for name in PORTS:
        time.sleep(2)  # the load runs on all three between restarts
        procs[name].terminate()
        procs[name].wait(timeout=30)
        log(f"rolling restart: {name} stopped gracefully ({len(acked)} sends acknowledged so far)")
        start(name)
        wait(lambda: backends(token) == ALL, f"{name} to rejoin")
    time.sleep(2)
    done.set()
    sender.join()
    send(conversation, "end", token)
    wait(lambda: "end" in follower.texts, "the follower to read the last message", 30)
    follower.done.set()
    got = [t for t in follower.texts if t.startswith("r") or t == "end"]
    assert got == acked + ["end"], (len(got), len(acked), [t for t in got if got.count(t) > 1][:5])
    log(f"rolling restart of 3 replicas in {time.time() - started:.1f} s: {len(acked)} sends acknowledged, "
        f"each read once and in order by a follower that reopened its stream {follower.reopened} times")


def grpc_web(token):
    c = http.client.HTTPConnection("127.0.0.1", LB, timeout=10)
    c.request("POST", "/epop.v1.UserService/GetMe", body=b"\x00\x00\x00\x00\x00", headers={
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "authorization": f"Bearer {token}",
    })
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.headers, body


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        for name in ["haproxy", *PORTS]:
            path = os.path.join(WORK, f"{name}.log")
            if os.path.exists(path):
                print(f"--- {name}.log (last lines)", file=sys.stderr)
                print(open(path, errors="replace").read()[-3000:], file=sys.stderr)
        raise
    log("all passed")
