#!/usr/bin/env python3
"""A minimal OpenAI-compatible chat-completions server for scripts/api-fuzz and the AI
benchmark: streams `tokens` (default 5) chunks, one every `every` ms (default 2), as SSE,
then the finish reason and usage. A question may ask for others with `tokens=N every=MS`
(the resumption tests' slow answers). Standard library only.

    python3 scripts/fake-openai.py PORT [TOKENS] [EVERY_MS]
"""
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKENS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
EVERY = (int(sys.argv[3]) if len(sys.argv) > 3 else 2) / 1000


def chunk(delta, finish=None, usage=None):
    body = {"id": "fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        tokens, every = TOKENS, EVERY
        try:
            asked = [m for m in json.loads(self.rfile.read(length))["messages"] if m["role"] == "user"]
            question = asked[-1]["content"] if asked else ""
        except (ValueError, KeyError, TypeError):
            question = ""
        if m := re.search(r"tokens=(\d+)", question):
            tokens = int(m.group(1))
        if m := re.search(r"every=(\d+)", question):
            every = int(m.group(1)) / 1000
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def send(data):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            for i in range(tokens):
                time.sleep(every)
                # The send time rides along, so a client can measure what the server adds.
                send(chunk({"content": f"t{i}@{time.time_ns()} "}))
            send(chunk({}, "stop"))
            send(chunk(None, usage={"prompt_tokens": 1, "completion_tokens": tokens,
                                     "total_tokens": tokens + 1}))
            send(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
