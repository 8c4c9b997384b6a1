"""The main process waits on a multiprocessing.Queue; its only producer, a child process,
is blocked on a multiprocessing.Lock the parent holds."""
import multiprocessing as mp


def produce(results, table_lock):
    results.put("warm-up")
    with table_lock:  # expect: producer
        results.put(42)


if __name__ == "__main__":
    mp.set_start_method("fork")
    results = mp.Queue()
    table_lock = mp.Lock()
    table_lock.acquire()
    worker = mp.Process(target=produce, args=(results, table_lock))
    worker.start()
    print(results.get())
    print("READY", flush=True)
    answer = results.get()  # expect: consumer
    table_lock.release()
