#!/usr/bin/env python3
"""Slow request bodies against a Herald node (docs/security.md).

usage: slowbody.py HOST PORT N [API_KEY]

Opens N connections, each sending the headers of a POST /v1/topics/t/events
with Content-Length: 100000, then "{" and one more byte every 2 s, and
reports how long the node took to close each one and the statuses it
answered. Every connection gives up after 60 s.
"""
import socket
import sys
import threading
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
key = sys.argv[4] if len(sys.argv) > 4 else ""
results = []
lock = threading.Lock()


def one():
    s = socket.create_connection((host, port))
    hdr = ("POST /v1/topics/t/events HTTP/1.1\r\nHost: x\r\n"
           "Content-Type: application/json\r\nContent-Length: 100000\r\n")
    if key:
        hdr += f"Authorization: Bearer {key}\r\n"
    s.sendall((hdr + "\r\n{").encode())
    t0, status, next_byte = time.time(), None, time.time() + 2
    s.settimeout(0.2)
    while time.time() - t0 < 60:
        try:
            d = s.recv(4096)
            if not d:
                break
            status = status or d.split(b" ")[1].decode()
            continue
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
        if time.time() >= next_byte:
            next_byte += 2
            try:
                s.sendall(b" ")
            except OSError:
                break
    with lock:
        results.append((time.time() - t0, status))
    s.close()


threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
closed = sum(1 for r in results if r[0] < 60)
print(f"{closed}/{n} closed by the node; seconds to close: "
      f"min {min(r[0] for r in results):.1f} max {max(r[0] for r in results):.1f}; "
      f"statuses {sorted(set(r[1] for r in results), key=str)}")
