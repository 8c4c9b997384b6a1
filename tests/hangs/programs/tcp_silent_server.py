"""Sends a request to a TCP server that accepts nothing and never answers (port in argv)."""
import socket
import sys


def request(port):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /status\n")
        print("READY", flush=True)
        return conn.recv(1024)  # expect: root


request(int(sys.argv[1]))
