"""A ProcessPoolExecutor task blocks in user code (a socket read nobody answers); map waits."""
import socket
from concurrent.futures import ProcessPoolExecutor


def fetch_feature(key):
    if key == 2:
        left, _right = socket.socketpair()  # _right stays open: nobody writes
        return left.recv(16)  # expect: root
    return key


def main():
    with ProcessPoolExecutor(max_workers=2) as executor:
        print("READY", flush=True)
        for value in executor.map(fetch_feature, range(4)):  # expect: caller
            print(value, flush=True)


if __name__ == "__main__":
    main()
