"""A consumer reads a multiprocessing Pipe; the producer, a spawned process, waits for a go
signal on an Event nobody sets."""
import multiprocessing


class Producer:
    def __init__(self, sender, go):
        self.sender = sender
        self.go = go

    def run(self):
        self.go.wait()  # expect: producer
        self.sender.send([1, 2, 3])


def main():
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    go = ctx.Event()
    process = ctx.Process(target=Producer(sender, go).run)
    process.start()
    sender.close()
    print("READY", flush=True)
    batch = receiver.recv()  # expect: consumer
    print(batch)


if __name__ == "__main__":
    main()
