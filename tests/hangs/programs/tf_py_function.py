"""A tf.data map with a tf.py_function whose Python code waits for a lock the training loop
holds while it iterates."""
import threading

import numpy as np
import tensorflow as tf

stats_lock = threading.Lock()


def normalise(x):
    with stats_lock:  # expect: root
        return x / 10.0


def train():
    ds = tf.data.Dataset.from_tensor_slices(np.arange(64, dtype=np.float32))
    ds = ds.map(lambda x: tf.py_function(normalise, [x], tf.float32))
    ds = ds.batch(8)
    with stats_lock:
        print("READY", flush=True)
        for step, batch in enumerate(ds):  # expect: loop
            print(step, batch.shape)


train()
