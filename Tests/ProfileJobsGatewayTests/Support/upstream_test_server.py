"""A small HTTP/1.1 upstream for the transport tests.

Binds 127.0.0.1 on a free port and prints the port on the first line of stdout.
Exits when stdin closes, so it never outlives the test process.

  /echo            answers 200 with a JSON description of the request (method, path, headers, body)
  /status/<code>   answers <code> with a short body and a repeated header
  /large/<n>       answers n bytes
  /interim         sends a 103 interim answer with a Link header, then 200 without it
  /stall           reads the request and never answers
  /truncated       promises 1000 bytes, sends 10 and closes the connection
  /stats           answers {"connections": <distinct client connections so far>}
"""

import http.server
import json
import os
import signal
import sys
import threading
import time

connections = 0
connections_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global connections
        super().setup()
        with connections_lock:
            connections += 1

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.answer()

    def do_PUT(self):
        self.answer()

    def do_PATCH(self):
        self.answer()

    def do_DELETE(self):
        self.answer()

    def answer(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length > 0 else b""

        if self.path == "/echo" or self.path.startswith("/echo?"):
            description = {
                "method": self.command,
                "path": self.path,
                "headers": [[name, value] for name, value in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
            }
            self.send_body(200, json.dumps(description).encode(), [("Content-Type", "application/json")])
        elif self.path.startswith("/status/"):
            code = int(self.path[len("/status/"):])
            self.send_body(code, b"status %d" % code, [("X-Repeated", "one"), ("X-Repeated", "two")])
        elif self.path.startswith("/large/"):
            self.send_body(200, b"x" * int(self.path[len("/large/"):]), [])
        elif self.path == "/interim":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.send_body(200, b"final", [("X-Final", "yes")])
        elif self.path == "/stall":
            time.sleep(60)
            self.close_connection = True
        elif self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/stats":
            with connections_lock:
                count = connections
            self.send_body(200, json.dumps({"connections": count}).encode(), [("Content-Type", "application/json")])
        else:
            self.send_body(404, b"no such path", [])

    def send_body(self, code, body, headers):
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


def main():
    # The test runner's thread may have signals blocked, and a spawned child inherits that mask.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
