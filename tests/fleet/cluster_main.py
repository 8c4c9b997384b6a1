"""A real distributed.LocalCluster in its own process, for the fleet tests.

Usage: python cluster_main.py N_WORKERS. Prints the scheduler address on one line, then
serves until its standard input closes. Running it apart from pytest keeps the nannies'
edits of os.environ (OMP_NUM_THREADS=1...) out of the test process.
"""

from __future__ import annotations

import logging
import sys

from distributed import LocalCluster


def main() -> None:
    workers = int(sys.argv[1])
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
