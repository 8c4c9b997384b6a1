"""Two threads take two global locks in opposite order: a lock-order deadlock."""
import threading
import time

first = threading.Lock()
second = threading.Lock()
both_hold = threading.Barrier(2)


def forward():
    with first:
        both_hold.wait()
        with second:  # expect: waits forward
            print("never")


def backward():
    with second:
        both_hold.wait()
        with first:  # expect: waits backward
            print("never")


workers = [threading.Thread(target=forward), threading.Thread(target=backward)]
for worker in workers:
    worker.start()
time.sleep(0.2)
print("READY", flush=True)
for worker in workers:
    worker.join()
