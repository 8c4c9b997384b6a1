"""The main thread waits on a queue while a background thread computes at full CPU and never
puts anything: the process is busy, but its main thread is waiting, not spinning."""
import queue
import threading

results = queue.Queue()


def crunch():
    value = 0
    while True:
        value = (value * 31 + 7) % 1000003  # expect: busy


threading.Thread(target=crunch, name="cruncher", daemon=True).start()
print("READY", flush=True)
first = results.get()  # expect: main
