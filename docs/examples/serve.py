#!/usr/bin/env python3
"""A small HTTP service to run under gracectl. Standard library only.

    gracectl run --health-path /health -- python3 docs/examples/serve.py
    gracectl run --listen-fd --health-path /health -- python3 docs/examples/serve.py

It listens on $PORT, or on the socket gracectl (or systemd) hands it as fd 3
when LISTEN_FDS is set and LISTEN_PID is this process. It counts its own
requests and errors and reports them on /health as JSON, where gracectl's
watchdog reads them:

    {"status": "ok", "request_count": 12, "error_count": 1}

Other paths: / says hello, /error answers 500 (and counts an error),
/slow?s=N sleeps N seconds before answering.
"""
import http.server
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
COUNTS = {"request_count": 0, "error_count": 0}
STARTED = time.time()


def count(error=False):
    with LOCK:
        COUNTS["request_count"] += 1
        if error:
            COUNTS["error_count"] += 1


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "grace-example/1"

    def reply(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/health":
            with LOCK:
                body = dict(COUNTS)
            body.update(status="ok", pid=os.getpid(), uptime_seconds=int(time.time() - STARTED))
            self.reply(200, json.dumps(body))
            return
        if url.path == "/error":
            count(error=True)
            self.reply(500, json.dumps({"error": "requested failure"}))
            return
        if url.path == "/slow":
            secs = float(urllib.parse.parse_qs(url.query).get("s", ["1"])[0])
            time.sleep(min(secs, 60))
        count()
        self.reply(200, "hello from pid %d on port %s\n" % (os.getpid(), self.server.server_address[1]), "text/plain")

    def log_message(self, fmt, *args):
        if os.environ.get("SERVE_QUIET"):
            return
        super().log_message(fmt, *args)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def inherited_socket():
    """The socket passed by systemd's socket-activation protocol, if any."""
    if os.environ.get("LISTEN_FDS") != "1" or os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    for var in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    return socket.socket(fileno=3)


def main():
    sock = inherited_socket()
    if sock is not None:
        server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        how = "inherited socket (fd 3)"
    else:
        port = int(os.environ.get("PORT", "8000"))
        server = Server(("", port), Handler)
        how = "$PORT"
    print("serve.py: pid %d listening on port %d via %s" % (os.getpid(), server.server_address[1], how), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
