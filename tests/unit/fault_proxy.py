"""A fault-injecting HTTP proxy for the az:// tests: between the client and Azurite, it forwards
each request on a connection of its own (Connection: close) and, chosen by a seeded random
generator, injects one fault instead:

  drop         close the client's connection before forwarding (the request had no effect)
  delay        wait past the client's timeout, then forward (the request takes effect late)
  503          answer 503 ServerBusy without forwarding
  500-after    forward, then answer 500 instead of the real answer (it took effect)
  reset-after  forward, then reset the client's connection (it took effect, no answer)

Usage: fault_proxy.py UPSTREAM_PORT SEED FAULT_RATE DELAY_S
Prints "port=N" once listening; on stdout at exit (stdin closed) "faults=" and counts per kind.
Standard library only; listens on 127.0.0.1 only.
"""
import random
import socket
import struct
import sys
import threading
import time

KINDS = ["drop", "delay", "503", "500-after", "reset-after"]


def read_message(sock, first=b""):
    """One HTTP message (headers and Content-Length body) from sock, or None at EOF."""
    data = first
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


def with_connection_close(head):
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"])


def forward(upstream_port, head, body):
    up = socket.create_connection(("127.0.0.1", upstream_port))
    up.sendall(with_connection_close(head) + b"\r\n\r\n" + body)
    answer = b""
    while True:
        chunk = up.recv(65536)
        if not chunk:
            break
        answer += chunk
    up.close()
    return answer


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def error_answer(status, reason, code):
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by fault_proxy</Message></Error>").encode()
    return (f"HTTP/1.1 {status} {reason}\r\nx-ms-error-code: {code}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


class Proxy:
    def __init__(self, upstream_port, seed, rate, delay_s):
        self.upstream_port = upstream_port
        self.random = random.Random(seed)
        self.rate = rate
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.counts = {k: 0 for k in KINDS + ["passed"]}

    def choose(self):
        with self.lock:
            kind = self.random.choice(KINDS) if self.random.random() < self.rate else "passed"
            self.counts[kind] += 1
            return kind

    def serve(self, client):
        try:
            message = read_message(client)
            if message is None:
                client.close()
                return
            head, body = message
            kind = self.choose()
            if kind == "drop":
                client.close()
            elif kind == "503":
                client.sendall(error_answer(503, "Server Busy", "ServerBusy"))
                client.close()
            elif kind == "delay":
                time.sleep(self.delay_s)
                forward(self.upstream_port, head, body)
                client.close()
            elif kind == "500-after":
                forward(self.upstream_port, head, body)
                client.sendall(error_answer(500, "Internal Server Error", "InternalError"))
                client.close()
            elif kind == "reset-after":
                forward(self.upstream_port, head, body)
                reset(client)
            else:
                client.sendall(forward(self.upstream_port, head, body))
                client.close()
        except OSError:
            client.close()


def main():
    upstream_port, seed, rate, delay_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    proxy = Proxy(upstream_port, seed, rate, delay_s)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"port={listener.getsockname()[1]}", flush=True)

    def accept():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=proxy.serve, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # the test closes our stdin when it is done
    with proxy.lock:
        print("faults=" + " ".join(f"{k}:{v}" for k, v in proxy.counts.items()), flush=True)


if __name__ == "__main__":
    main()
