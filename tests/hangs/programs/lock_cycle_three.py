"""Three stages, each holding its own lock and taking the next stage's lock: a cycle of three
threads (explicit acquire() calls, locks handed over as arguments)."""
import threading
import time

started = threading.Barrier(3)


def stage(mine, following, label):
    mine.acquire()
    try:
        started.wait()
        time.sleep(0.05)
        following.acquire()  # expect: waits
        following.release()
    finally:
        mine.release()


def run():
    locks = [threading.Lock() for _ in range(3)]
    threads = [threading.Thread(target=stage, args=(locks[i], locks[(i + 1) % 3], i),
                                name=f"stage-{i}") for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    print("READY", flush=True)
    for thread in threads:
        thread.join()


run()
