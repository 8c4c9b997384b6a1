"""A process starts a GNU OpenMP pool (a C library built with -fopenmp), then forks; the
child's first parallel region waits for pool threads it does not have."""
import ctypes
import os
import sys

library = ctypes.CDLL(sys.argv[1])
library.run_parallel()
pid = os.fork()
if pid == 0:
    library.run_parallel()  # expect: child
    os._exit(0)
print("READY", flush=True)
os.waitpid(pid, 0)  # expect: parent
