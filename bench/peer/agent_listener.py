#!/usr/bin/env python3
"""A consumer like waldur-site-agent's STOMP listener, as the peer row of
`eventfn bench --peer`.

It does per message what the agent's listener does before any REST call:
json.loads the body for the "Received a message" INFO log line (formatted,
then dropped), and json.loads it again in the handler. Acknowledgement is
the agent's ack=auto, or client-individual (EVENTFN_BENCH_PEER_ACK) to
compare like with like. TCP uses stomp.py (Debian's python3-stomp 8.0,
which has no WebSocket transport); stomp+ws:// uses a minimal STOMP 1.2
client over python3-websocket.

It speaks the benchmark's child protocol (bench/child.go): the job as JSON
in EVENTFN_BENCH_CHILD, the passcode in EVENTFN_BENCH_PASSCODE, one JSON
line {"ready": …} once subscribed and one {"result": …} at the end on
stdout; it stops early when stdin reaches end of file.
"""
import json
import logging
import os
import resource
import sys
import threading
import time
from urllib.parse import urlparse


def rss_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    def __init__(self, want):
        self.want = want
        self.settled = 0
        self.first = None
        self.first_cpu = 0.0
        self.last = None
        self.last_cpu = 0.0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def received(self):
        if self.first is None:
            with self.lock:
                if self.first is None:
                    self.first, self.first_cpu = time.time(), cpu_seconds()

    def settle(self):
        with self.lock:
            self.settled += 1
            if self.settled == self.want:
                self.last, self.last_cpu = time.time(), cpu_seconds()
                self.done.set()


log = logging.getLogger("waldur-site-agent-peer")


def make_handler(meter, queue, ack):
    def on_body(body):
        meter.received()
        # The listener's log line, as the agent writes it.
        log.info("Received a message %s on queue %s", json.loads(body), queue)
        # The handler's own decode (the agent's handlers json.loads the body).
        message = json.loads(body)
        _ = message.get("order_uuid") or message.get("resource_uuid")
        ack()
        meter.settle()
    return on_body


def run_tcp(job, passcode, meter, ready, ack_mode):
    import stomp

    u = urlparse(job["url"])
    conn = stomp.Connection12([(u.hostname, u.port or 61613)], heartbeats=(10000, 10000), vhost=job.get("vhost") or "/")

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            def ack():
                if ack_mode != "auto":
                    conn.ack(frame.headers["ack"])
            handler(frame.body, ack)

        def on_error(self, frame):
            sys.stderr.write("STOMP error: %s\n" % frame.body)
            meter.done.set()

    def handler(body, ack):
        make_handler(meter, job["destination"], ack)(body)

    conn.set_listener("peer", Listener())
    conn.connect(job.get("login"), passcode, wait=True)
    headers = {}
    if job.get("prefetch"):
        headers["prefetch-count"] = str(job["prefetch"])
    conn.subscribe(destination=job["destination"], id="1", ack=ack_mode, headers=headers)
    ready()
    return conn.disconnect


def run_ws(job, passcode, meter, ready, ack_mode):
    import websocket

    u = urlparse(job["url"])
    scheme = "wss" if u.scheme.endswith("wss") else "ws"
    ws = websocket.create_connection("%s://%s%s" % (scheme, u.netloc, u.path or "/ws"), subprotocols=["v12.stomp"])

    def frame(command, headers, body=""):
        lines = [command] + ["%s:%s" % kv for kv in headers.items()]
        ws.send("\n".join(lines) + "\n\n" + body + "\x00")

    frame("CONNECT", {"accept-version": "1.2", "host": job.get("vhost") or "/", "login": job.get("login") or "",
                      "passcode": passcode, "heart-beat": "0,0"})

    def parse(data):
        head, _, body = data.partition("\n\n")
        lines = head.lstrip("\n").split("\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k, v)
        return lines[0], headers, body.rstrip("\x00")

    cmd, headers, body = parse(ws.recv())
    if cmd != "CONNECTED":
        raise RuntimeError("STOMP: %s %s" % (cmd, body))
    sub = {"id": "1", "destination": job["destination"], "ack": ack_mode}
    if job.get("prefetch"):
        sub["prefetch-count"] = str(job["prefetch"])
    frame("SUBSCRIBE", sub)
    ready()
    lock = threading.Lock()

    def reader():
        while not meter.done.is_set():
            try:
                data = ws.recv()
            except Exception:
                meter.done.set()
                return
            if isinstance(data, bytes):
                data = data.decode()
            # One WebSocket message may carry several frames, each ended by
            # NUL (bodies are JSON: no NUL inside).
            for raw in data.split("\x00"):
                if raw.strip("\n") == "":
                    continue  # heart-beat or the end
                cmd, headers, body = parse(raw)
                if cmd == "ERROR":
                    sys.stderr.write("STOMP error: %s\n" % body)
                    meter.done.set()
                    return
                if cmd != "MESSAGE":
                    continue

                def ack(h=headers):
                    if ack_mode != "auto":
                        with lock:
                            frame("ACK", {"id": h["ack"]})
                make_handler(meter, job["destination"], ack)(body)

    threading.Thread(target=reader, daemon=True).start()
    return ws.close


def main():
    job = json.loads(os.environ["EVENTFN_BENCH_CHILD"])
    passcode = os.environ.get("EVENTFN_BENCH_PASSCODE", "")
    ack_mode = os.environ.get("EVENTFN_BENCH_PEER_ACK", "auto")
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"),
                        format="[%(asctime)s] [%(levelname)s] %(message)s")
    meter = Meter(job["count"])
    out_lock = threading.Lock()

    def emit(line):
        with out_lock:
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    state = {}

    def ready():
        state["rss_ready"] = rss_bytes("VmRSS")
        emit({"ready": {"unix_ns": time.time_ns(), "rss_bytes": state["rss_ready"]}})

    def stdin_watch():
        sys.stdin.read()
        meter.done.set()

    threading.Thread(target=stdin_watch, daemon=True).start()
    error = ""
    try:
        run = run_ws if "+ws" in job["url"].split("://")[0] else run_tcp
        close = run(job, passcode, meter, ready, ack_mode)
        timeout = job.get("timeout", 0) / 1e9 or None
        if not meter.done.wait(timeout):
            error = "timed out"
        try:
            close()
        except Exception:
            pass
    except Exception as e:  # reported to the benchmark, which fails the run
        error = "%s: %s" % (type(e).__name__, e)
    res = {"role": "agent-py", "settled": meter.settled, "settle_errors": 0,
           "rss_ready_bytes": state.get("rss_ready", 0), "rss_end_bytes": rss_bytes("VmRSS"),
           "rss_peak_bytes": rss_bytes("VmHWM"), "seconds": 0, "cpu_seconds": 0}
    if meter.last is not None:
        res["seconds"] = meter.last - meter.first
        res["cpu_seconds"] = meter.last_cpu - meter.first_cpu
    if not error and meter.settled < job["count"]:
        error = "stopped after %d of %d messages" % (meter.settled, job["count"])
    if error:
        res["error"] = error
    emit({"result": res})
    sys.exit(1 if error else 0)


if __name__ == "__main__":
    main()
