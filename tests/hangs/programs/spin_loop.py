"""A busy loop waiting for a flag nothing sets: a real spin."""
done = False


def wait_until_done():
    polls = 0
    while not done:  # expect: loop
        polls += 1  # expect: root


print("READY", flush=True)
wait_until_done()
