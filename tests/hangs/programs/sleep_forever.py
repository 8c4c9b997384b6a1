"""A long time.sleep: waiting, never a deadlock."""
import time


class Poller:
    interval = 1000

    def wait_for_next_round(self):
        time.sleep(self.interval)  # expect: root


print("READY", flush=True)
Poller().wait_for_next_round()
