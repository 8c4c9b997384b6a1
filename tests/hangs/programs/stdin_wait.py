"""Waits for a line on stdin that never comes."""
import sys


def ask():
    print("READY", flush=True)
    return sys.stdin.readline()  # expect: root


answer = ask()
