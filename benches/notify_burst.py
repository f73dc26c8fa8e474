"""The notification burst benchmark's client (run by benches/notifications.sh): 200 members
of one group, each with a Web Push subscription at the fake push service; one member sends a
burst of `@all` mentions (each notifies the 199 others, each pushed) while another member
sends plain messages to a small group every 20 ms, as in the window before the burst (the
same run's baseline). It prints those sends' latencies with and without the burst, the
mentions' own, and the time from the first mention until the last push reached the fake
(which verified and decrypted it).

  notify_burst.py BASE_URL ADMIN_PASSWORD FAKE_URL MEMBERS MESSAGES
"""

import http.client
import json
import statistics
import sys
import threading
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


# Someone else's ordinary traffic: a member sends a plain message every 20 ms to a small
# group of their own, through the baseline window and then through the burst's.
side = Api(tokens[1])
small = side.call("POST", "/api/conversations", {"kind": "CONVERSATION_KIND_GROUP", "title": "Side", "memberIds": ids[2:4]})


def steady(seconds, out):
    conn = Api(tokens[1])
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        started = time.perf_counter()
        conn.call("POST", f"/api/conversations/{small['id']}/messages",
                  {"content": doc([{"type": "text", "text": f"side {i}"}])})
        out.append((time.perf_counter() - started) * 1000)
        i += 1
        time.sleep(max(0.0, 0.02 - (time.perf_counter() - started)))


def doc(nodes):
    return {"type": "doc", "content": [{"type": "paragraph", "content": nodes}]}


def burst(content):
    conn = Api(tokens[0])
    times = []
    for i in range(messages):
        started = time.perf_counter()
        conn.call("POST", f"/api/conversations/{group['id']}/messages", {"content": content(i)})
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times):
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times), p99


WINDOW = 4.0
baseline = []
steady(WINDOW, baseline)
during = []
side_thread = threading.Thread(target=steady, args=(WINDOW, during))
side_thread.start()
first_mention = time.time()
mentions = burst(lambda i: doc([{"type": "text", "text": f"all hands {i} "}, {"type": "mention", "attrs": {"id": "all", "label": "all"}}]))
sent_all = time.time()
expected = already + members - 1
for _ in range(1200):
    got = json.load(urllib.request.urlopen(fake + "/received"))
    if len(got["delivered"]) >= expected:
        break
    time.sleep(0.05)
side_thread.join()
pushed = got["delivered"][already:]
if got["errors"]:
    raise SystemExit(f"the fake refused pushes: {got['errors'][:3]}")
last = max(p["at"] for p in pushed) if pushed else float("nan")
counts = sorted(p["payload"]["count"] for p in pushed)
(p50a, p99a), (p50b, p99b), (p50m, p99m) = summary(baseline), summary(during), summary(mentions)
print(f"members: {members}; burst: {messages} @all mentions sent back to back by one member")
print(f"another member's plain sends, every 20 ms for {WINDOW:.0f} s: without the burst p50 {p50a:.1f} ms, p99 {p99a:.1f} ms ({len(baseline)} sends); "
      f"during it p50 {p50b:.1f} ms, p99 {p99b:.1f} ms ({len(during)} sends): {p50b / p50a:.2f}x / {p99b / p99a:.2f}x")
print(f"the @all mentions themselves: p50 {p50m:.1f} ms, p99 {p99m:.1f} ms (each records 199 mentions in its transaction)")
print(f"notifications made: {messages * (members - 1)}; pushes handed to the fake: {len(pushed)} "
      f"(collapsed per member: {counts[0] if counts else 0}-{counts[-1] if counts else 0} notifications each)")
print(f"the burst took {(sent_all - first_mention) * 1000:.0f} ms to send; the last push arrived "
      f"{(last - first_mention) * 1000:.0f} ms after the first mention was sent")
