#!/usr/bin/env python3
"""Serve /health on many ports from one process, for the watchdog benchmarks.

    helper_servers.py FIRST_PORT COUNT HANGING

The first HANGING ports accept requests and never answer; the others answer
{"status": "ok", "request_count": N, "error_count": 0}. Prints "ready" when
every port listens.
"""
import http.server
import sys
import threading
import time

first, count, hanging = (int(a) for a in sys.argv[1:4])


def handler(hang):
    class H(http.server.BaseHTTPRequestHandler):
        n = 0

        def do_GET(self):
            if hang:
                time.sleep(3600)
            H.n += 1
            body = b'{"status": "ok", "request_count": %d, "error_count": 0}' % H.n
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    return H


class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


for i in range(count):
    srv = S(("127.0.0.1", first + i), handler(i < hanging))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
