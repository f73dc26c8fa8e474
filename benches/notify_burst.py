"""The notification burst benchmark's client (run by benches/notifications.sh): 200 members
of one group, each with a Web Push subscription at the fake push service; one member sends a
burst of plain messages (the baseline: no notifications), then a burst of `@all` mentions
(each notifies the 199 others, each pushed). It prints the send latencies of both bursts and
the time from the first mention until the last push reached the fake (which verified and
decrypted it).

  notify_burst.py BASE_URL ADMIN_PASSWORD FAKE_URL MEMBERS MESSAGES
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request

base, password, fake, members, messages = sys.argv[1:6]
members, messages = int(members), int(messages)
url = urllib.parse.urlparse(base)


class Api:
    """Keep-alive JSON over REST."""

    def __init__(self, token=None):
        self.conn = http.client.HTTPConnection(url.hostname, url.port)
        self.token = token

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        self.conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")
        return json.loads(data) if data else {}


def post(u, body=None):
    req = urllib.request.Request(u, data=json.dumps(body or {}).encode(), method="POST")
    with urllib.request.urlopen(req) as r:
        data = r.read()
        return json.loads(data) if data else {}


admin = Api()
admin.token = admin.call("POST", "/api/auth/login", {"email": "admin@epop.local", "password": password})["accessToken"]
ids, tokens = [], []
for i in range(members):
    email = f"m{i}-{int(time.time())}@example.com"
    u = admin.call("POST", "/api/admin/users", {"email": email, "displayName": f"Member {i}", "password": "bench-member-password"})
    ids.append(u["id"])
    tokens.append(Api().call("POST", "/api/auth/login", {"email": email, "password": "bench-member-password"})["accessToken"])
sender = Api(tokens[0])
group = sender.call("POST", "/api/conversations", {"kind": "CONVERSATION_KIND_GROUP", "title": "Everyone", "memberIds": ids[1:]})
for t in tokens[1:]:
    sub = post(fake + "/subscribe")
    Api(t).call("POST", "/api/notifications/devices", {
        "platform": "PUSH_PLATFORM_WEB", "address": sub["endpoint"], "p256dh": sub["p256dh"], "auth": sub["auth"], "name": "bench"})
# Being added was pushed to everyone: wait for those before measuring.
for _ in range(600):
    got = json.load(urllib.request.urlopen(fake + "/received"))
    if len(got["delivered"]) >= members - 1:
        break
    time.sleep(0.1)
already = len(got["delivered"])


def doc(nodes):
    return {"type": "doc", "content": [{"type": "paragraph", "content": nodes}]}


def burst(content):
    times = []
    for i in range(messages):
        started = time.perf_counter()
        sender.call("POST", f"/api/conversations/{group['id']}/messages", {"content": content(i)})
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times):
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times), p99


plain = burst(lambda i: doc([{"type": "text", "text": f"plain {i}"}]))
first_mention = time.time()
mentions = burst(lambda i: doc([{"type": "text", "text": f"all hands {i} "}, {"type": "mention", "attrs": {"id": "all", "label": "all"}}]))
sent_all = time.time()
expected = already + members - 1
for _ in range(1200):
    got = json.load(urllib.request.urlopen(fake + "/received"))
    if len(got["delivered"]) >= expected:
        break
    time.sleep(0.05)
pushed = got["delivered"][already:]
if got["errors"]:
    raise SystemExit(f"the fake refused pushes: {got['errors'][:3]}")
last = max(p["at"] for p in pushed) if pushed else float("nan")
counts = sorted(p["payload"]["count"] for p in pushed)
(p50a, p99a), (p50b, p99b) = summary(plain), summary(mentions)
print(f"members: {members}; burst: {messages} messages each, sequential from one client")
print(f"send latency, plain messages (baseline): p50 {p50a:.1f} ms, p99 {p99a:.1f} ms")
print(f"send latency, @all mentions:             p50 {p50b:.1f} ms, p99 {p99b:.1f} ms  ({p50b / p50a:.2f}x / {p99b / p99a:.2f}x the baseline)")
print(f"notifications made: {messages * (members - 1)}; pushes handed to the fake: {len(pushed)} "
      f"(collapsed per member: {counts[0] if counts else 0}-{counts[-1] if counts else 0} notifications each)")
print(f"the burst took {(sent_all - first_mention) * 1000:.0f} ms to send; the last push arrived "
      f"{(last - first_mention) * 1000:.0f} ms after the first mention was sent")
