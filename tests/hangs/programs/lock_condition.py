"""A Condition used as a lock, and a local Lock handed to a thread: the main thread holds the
condition and takes the lock, the helper holds the lock and takes the condition."""
import threading
import time


def helper(cache_lock, state, ready):
    cache_lock.acquire()
    ready.set()
    time.sleep(0.1)
    with state:  # expect: waits helper
        state.notify_all()
    cache_lock.release()


def run():
    state = threading.Condition()
    cache_lock = threading.Lock()
    ready = threading.Event()
    thread = threading.Thread(target=helper, args=(cache_lock, state, ready), daemon=True)
    with state:
        thread.start()
        ready.wait()
        print("READY", flush=True)
        cache_lock.acquire()  # expect: waits main
        cache_lock.release()


run()
