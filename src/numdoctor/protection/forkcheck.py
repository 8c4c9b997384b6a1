"""Is it safe to fork() right now? (A started GNU OpenMP pool says no.)

The same facts `check` uses for FORK001, gathered for the current process only: which libgomp
copies are mapped, and whether any of them has pool threads parked on their stacks. Reading
/proc costs about a millisecond, which is nothing next to a fork.
"""

from __future__ import annotations

from numdoctor.findings import Finding, Severity


def fork_hazard() -> Finding | None:
    """A FORK001 finding if forking now would deadlock the child, else None."""
    from numdoctor.core.procfs import read_maps
    from numdoctor.snapshot.libraries import loaded_libraries
    from numdoctor.snapshot.threads import attribute_threads, python_thread_ids

    try:
        maps = read_maps()
    except OSError:
        return None
    gomp = [lib for lib in loaded_libraries(maps) if lib.vendor == "gnu"]
    if not gomp:
        return None
    counts, _, _ = attribute_threads({lib.path: lib.text_ranges for lib in gomp}, maps,
                                     skip_tids=python_thread_ids())
    started = [(path, n) for path, n in counts.items() if n]
    if not started:
        return None
    from numdoctor.rules.fork import fork_after_openmp
    from numdoctor.snapshot.ownership import owning_package
    from numdoctor.snapshot.package_names import package_label

    evidence = []
    for path, threads in started:
        owner = owning_package(path)
        package = package_label(*owner) if owner else "installed by no package manager"
        evidence.append(f"GNU libgomp: {path} [{package}] ({threads} pool thread(s) running)")
    return fork_after_openmp.rule.finding(
        evidence,
        severity=Severity.ERROR,
        title="fork() now would deadlock the child: a GNU OpenMP pool is running",
        why="The child inherits libgomp's record of a thread pool whose threads it does not "
            "have, and blocks forever at its first parallel region.",
        fix='Use multiprocessing.get_context("spawn") or "forkserver" (DataLoader: '
            'multiprocessing_context="spawn"), or set OMP_NUM_THREADS=1 before the parent '
            "starts.",
    )
