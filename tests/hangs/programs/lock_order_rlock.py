"""Bank transfers between two accounts, each guarded by its own RLock taken in argument
order: two transfers in opposite directions deadlock (the locks are attributes, both threads
run the same method)."""
import threading
import time


class Account:
    def __init__(self, name, balance):
        self.name = name
        self.balance = balance
        self.guard = threading.RLock()


class Bank:
    def __init__(self):
        self.started = threading.Barrier(2)

    def transfer(self, source, target, amount):
        with source.guard:
            self.started.wait()
            self._move(source, target, amount)

    def _move(self, source, target, amount):
        with target.guard:  # expect: waits
            source.balance -= amount
            target.balance += amount


def main():
    bank = Bank()
    alice, bob = Account("alice", 10), Account("bob", 20)
    threads = [
        threading.Thread(target=bank.transfer, args=(alice, bob, 5), name="alice-to-bob"),
        threading.Thread(target=bank.transfer, args=(bob, alice, 7), name="bob-to-alice"),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    print("READY", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
