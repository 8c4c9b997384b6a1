"""multiprocessing.Pool.map after one of its workers was killed by SIGKILL mid-task."""
import os
import signal
import time
from multiprocessing import Pool


def square(n):
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return n * n


if __name__ == "__main__":
    with Pool(2) as pool:
        print("READY", flush=True)
        print(pool.map(square, range(8)))  # expect: caller
