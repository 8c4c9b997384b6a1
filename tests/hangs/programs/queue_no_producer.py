"""A consumer waits on a queue.Queue that nothing will ever fill."""
import queue

jobs = queue.Queue()


def consume(source):
    total = 0
    while True:
        print("READY", flush=True)
        item = source.get()  # expect: root
        total += item


consume(jobs)
