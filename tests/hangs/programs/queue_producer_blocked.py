"""A worker thread should fill a results queue, but it first waits for the registry lock
that the consumer holds while it waits for the results."""
import queue
import threading


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.results = queue.Queue(maxsize=4)
        self.consuming = threading.Event()

    def produce(self):
        self.consuming.wait()
        for n in range(3):
            self.lock.acquire()  # expect: producer
            try:
                self.results.put(n)
            finally:
                self.lock.release()

    def consume(self):
        with self.lock:
            self.consuming.set()
            print("READY", flush=True)
            return self.results.get()  # expect: consumer


registry = Registry()
worker = threading.Thread(target=registry.produce, name="producer", daemon=True)
worker.start()
registry.consume()
