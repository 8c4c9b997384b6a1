"""A ThreadPoolExecutor task blocks in user code; the caller waits on its future."""
import threading
from concurrent.futures import ThreadPoolExecutor

config_loaded = threading.Event()


def score(row):
    if row == 3:
        config_loaded.wait()  # expect: root
    return row * 2


with ThreadPoolExecutor(max_workers=2) as pool:
    futures = [pool.submit(score, row) for row in range(6)]
    print("READY", flush=True)
    results = [f.result() for f in futures]  # expect: caller
