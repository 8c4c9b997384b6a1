"""tf.data.Dataset.from_generator whose generator blocks on an empty queue.Queue."""
import queue

import tensorflow as tf

incoming = queue.Queue()


def gen():
    while True:
        item = incoming.get()  # expect: root
        yield item


dataset = tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec((), tf.int32))
dataset = dataset.batch(4).prefetch(2)
print("READY", flush=True)
for batch in dataset:  # expect: loop
    print(batch)
