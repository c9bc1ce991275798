#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""A webhook receiver for Alertmanager that logs each notification: one JSON line per alert in it, with the time
it arrived, appended to FILE (and printed). scripts/stack.sh runs it when no --webhook is given, so that a
firing alert can be seen arriving without a pager.
    webhook-log.py --listen 127.0.0.1:PORT --out FILE"""
import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:9095", help="ADDR:PORT to listen on (default %(default)s)")
    ap.add_argument("--out", required=True, help="file to append the alerts to, one JSON object per line")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        ap.error(f"--listen {a.listen!r}: want ADDR:PORT")
    out = open(a.out, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) if 0 < n <= 1 << 20 else b"{}")
            except ValueError:
                self.send_error(400, "not JSON")
                return
            now = time.time()
            for al in body.get("alerts", []):
                rec = {"received": now, "status": al.get("status"), "labels": al.get("labels", {}),
                       "annotations": al.get("annotations", {}), "startsAt": al.get("startsAt"),
                       "endsAt": al.get("endsAt")}
                out.write(json.dumps(rec, sort_keys=True) + "\n")
                print(f"{time.strftime('%H:%M:%S')} {rec['status']:8} {rec['labels'].get('alertname')} "
                      f"{rec['annotations'].get('summary', '')}", flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
