"""A small HTTP/1.1 upstream for the transport tests and for byte-level upstream faults.

Binds 127.0.0.1 on a free port and prints the port on the first line of stdout.
Exits when stdin closes, so it never outlives the test process.

Routes are chosen by the first path segment; whatever follows it is ignored, so an organization whose baseURL is
http://127.0.0.1:<port>/reset gets the fault on every call (/reset/data/core/ups/system/jobs/...).

  /echo              answers 200 with a JSON description of the request (method, path, headers, body)
  /status/<code>     answers <code> with a short body and a repeated header
  /large/<n>         answers n bytes
  /interim           sends a 103 interim answer with a Link header, then 200 without it
  /stall             reads the request and never answers
  /truncated         promises 1000 bytes, sends 10 and closes the connection
  /job               answers 200 with an Azure job
  /gzip              the Azure job, gzip-compressed with Content-Encoding: gzip (deflate-compressed for /deflate)
  /corrupt-gzip      says Content-Encoding: gzip and sends bytes that are not gzip
  /reset             reads the request and resets the connection without answering
  /reset-mid-body    sends the status, headers and 10 of 1000 promised bytes, then resets the connection
  /stall-mid-body    sends the status, headers and 10 of 1000 promised bytes, then sends nothing more
  /html-502          answers 502 with a load balancer's HTML page
  /empty-200         answers 200, Content-Type application/json, with an empty body
  /slow/<ms>         waits <ms> milliseconds, then answers the Azure job
  /stats             answers {"connections": <distinct client connections so far>}
  /requests          answers {"<first segment>": <requests received>, ...}, itself not counted

With `--tls CERT KEY` it serves the same routes over HTTPS.
"""

import gzip
import http.server
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import zlib

connections = 0
requests = {}
connections_lock = threading.Lock()

AZURE_JOB = json.dumps({
    "id": "job-1", "imsOrgId": "fault@AdobeOrg", "dataSetId": "5c802d3cd83fc114b741c4b5", "jobType": "DELETE",
    "status": "COMPLETED", "createEpoch": 1559025404, "updateEpoch": 1559025406,
}).encode()

LOAD_BALANCER_PAGE = (b"<html><head><title>502 Bad Gateway</title></head>"
                      b"<body><center><h1>502 Bad Gateway</h1></center></body></html>")


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
        segments = self.path.split("?")[0].split("/")
        route = segments[1] if len(segments) > 1 else ""
        argument = segments[2] if len(segments) > 2 else ""
        if route not in ("requests", "stats"):
            with connections_lock:
                requests[route] = requests.get(route, 0) + 1

        if route == "echo":
            description = {
                "method": self.command,
                "path": self.path,
                "headers": [[name, value] for name, value in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
            }
            self.send_body(200, json.dumps(description).encode(), [("Content-Type", "application/json")])
        elif route == "status":
            code = int(argument)
            self.send_body(code, b"status %d" % code, [("X-Repeated", "one"), ("X-Repeated", "two")])
        elif route == "large":
            self.send_body(200, b"x" * int(argument), [])
        elif route == "interim":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.send_body(200, b"final", [("X-Final", "yes")])
        elif route == "stall":
            time.sleep(60)
            self.close_connection = True
        elif route == "truncated":
            self.send_partial()
            self.close_connection = True
        elif route == "job":
            self.send_body(200, AZURE_JOB, [("Content-Type", "application/json")])
        elif route == "gzip":
            self.send_body(200, gzip.compress(AZURE_JOB),
                           [("Content-Type", "application/json"), ("Content-Encoding", "gzip")])
        elif route == "deflate":
            self.send_body(200, zlib.compress(AZURE_JOB),
                           [("Content-Type", "application/json"), ("Content-Encoding", "deflate")])
        elif route == "corrupt-gzip":
            self.send_body(200, b"\x1f\x8b\x08\x00garbage, not a gzip stream at all",
                           [("Content-Type", "application/json"), ("Content-Encoding", "gzip")])
        elif route == "reset":
            self.reset()
        elif route == "reset-mid-body":
            self.send_partial()
            self.reset()
        elif route == "stall-mid-body":
            self.send_partial()
            time.sleep(60)
            self.close_connection = True
        elif route == "html-502":
            self.send_body(502, LOAD_BALANCER_PAGE, [("Content-Type", "text/html")])
        elif route == "empty-200":
            self.send_body(200, b"", [("Content-Type", "application/json")])
        elif route == "slow":
            time.sleep(int(argument) / 1000)
            self.send_body(200, AZURE_JOB, [("Content-Type", "application/json")])
        elif route == "stats":
            with connections_lock:
                count = connections
            self.send_body(200, json.dumps({"connections": count}).encode(), [("Content-Type", "application/json")])
        elif route == "requests":
            with connections_lock:
                counts = dict(requests)
            self.send_body(200, json.dumps(counts).encode(), [("Content-Type", "application/json")])
        else:
            self.send_body(404, b"no such path", [])

    def send_partial(self):
        """The status line, headers and 10 of the 1000 bytes Content-Length promises."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"id": "jo')
        self.wfile.flush()

    def reset(self):
        """Closes with SO_LINGER 0, so the kernel sends RST instead of an orderly FIN."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

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
    # `--tls CERT KEY` serves HTTPS with that certificate chain, for the certificate verification tests.
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
