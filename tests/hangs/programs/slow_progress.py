"""A slow but progressing loop: computes, sleeps a little, prints now and then."""
import time


def step(i):
    total = 0
    for k in range(20000):
        total += k * i
    time.sleep(0.02)
    return total


print("READY", flush=True)
for i in range(100000):
    step(i)
    if i % 50 == 0:
        print("step", i, flush=True)
