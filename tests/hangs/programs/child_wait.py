"""Waits for a child process that sleeps for a long time."""
import subprocess

print("READY", flush=True)
subprocess.run(["sleep", "1000"], check=True)  # expect: root
