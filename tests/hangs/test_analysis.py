"""`analyse` is a pure function of facts: tested here on facts recorded from the real hangs
(tests/hangs/facts, written by NUMDOCTOR_RECORD_FACTS=1) and on facts written by hand —
partial ones included (faulthandler stacks only, a thread without a stack)."""

from __future__ import annotations

import json

import pytest
from hang_helpers import FACTS, PROGRAMS, expected_line, load_facts

from numdoctor.core.stacks.model import Frame, ThreadStack
from numdoctor.core.waits.model import (
    Fate,
    FrameContext,
    LockSite,
    ProcessFacts,
    ThreadFacts,
    TreeFacts,
)
from numdoctor.rules.hangs import analyse

# program -> (code of the headline, proven, label of the root's line or None)
RECORDED = {
    "lock_order": ("HANG004", True, None),
    "lock_order_rlock": ("HANG004", True, "waits"),
    "lock_condition": ("HANG004", True, None),
    "queue_no_producer": ("HANG005", False, "root"),
    "queue_producer_blocked": ("HANG005", False, "producer"),
    "lock_cycle_three": ("HANG004", True, None),
    "mp_queue_stuck_producer": ("HANG005", False, "producer"),
    "mp_pipe_stuck_producer": ("HANG005", False, "producer"),
    "futures_thread": ("HANG005", False, "root"),
    "futures_process": ("HANG005", False, "root"),
    "busy_background": ("HANG005", False, "busy"),
    "dataloader_stuck": ("HANG006", False, "root"),
    "tf_generator": ("HANG007", False, "root"),
    "tf_py_function": ("HANG007", False, "root"),
    "pool_killed_worker": ("HANG008", True, "caller"),
    "dist_mismatch": ("HANG009", True, "rank 1"),
    "dist_missing_rank": ("HANG010", True, "rank 0"),
    "omp_fork": ("FORK001", True, "child"),
    "sleep_forever": ("HANG011", False, "root"),
    "stdin_wait": ("HANG012", False, "root"),
    "tcp_silent_server": ("HANG012", False, "root"),
    "spin_loop": ("HANG002", False, None),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_facts_give_the_class_and_root_of_the_real_hang(name):
    if not (FACTS / f"{name}.json").exists():
        pytest.skip(f"no recorded facts for {name}")
    code, proven, label = RECORDED[name]
    diagnosis = analyse(load_facts(name))
    headline = diagnosis.findings[0]
    assert headline.code == code, headline.title
    assert diagnosis.proven is proven
    if label is not None:
        expected = f"{name}.py:{expected_line(PROGRAMS / f'{name}.py', label)}"
        assert diagnosis.root is not None and diagnosis.root.where == expected
        assert expected in headline.title or expected in "\n".join(headline.evidence)
    assert len(headline.evidence) <= 14  # a few lines, not hundreds


@pytest.mark.parametrize("name", sorted(p.stem for p in FACTS.glob("*.json")))
def test_recorded_facts_round_trip_through_json(name):
    facts = load_facts(name)
    again = TreeFacts.from_dict(json.loads(json.dumps(facts.to_dict())))
    assert again == facts
    assert analyse(again).findings[0] == analyse(facts).findings[0]


def test_facts_written_by_another_version_still_load():
    data = load_facts("sleep_forever").to_dict()
    data["a_field_from_the_future"] = 1
    data["processes"][0]["threads"][0]["another"] = "x"
    assert TreeFacts.from_dict(data).processes[0].threads[0].tid > 0


# -- facts written by hand ---------------------------------------------------------------------

def py(function: str, line: int, file: str = "/app/train.py") -> Frame:
    return Frame("python", function, file, line)


def lib(function: str, module: str, line: int = 10) -> Frame:
    return Frame("python", function, f"/usr/lib/python3.11/{module}", line)


def thread(tid: int, frames: list[Frame], *, name: str = "", source: str = "py-spy",
           contexts: tuple[FrameContext, ...] = (), **kernel) -> ThreadFacts:
    stack = ThreadStack(id=hex(tid), native_id=tid if source != "faulthandler" else None,
                        name=name, frames=frames, source=source)
    return ThreadFacts(tid=tid, stack=stack, contexts=list(contexts), **kernel)


def with_lock(function: str, line: int, taking: str, held: str, held_line: int,
              file: str = "/app/train.py", *, untimed: bool = True) -> FrameContext:
    return FrameContext(
        file=file, line=line, function=function, text=f"with {taking}:",
        acquiring=LockSite(taking, file, line, function, untimed=untimed, kind="with"),
        holding=[LockSite(held, file, held_line, function, kind="with")])


def one_process(*threads: ThreadFacts, pid: int = 100) -> TreeFacts:
    return TreeFacts(taken=5.0, window=0.3, main_pid=pid, processes=[
        ProcessFacts(pid=pid, ppid=1, command="python train.py", role="main", python=True,
                     threads=list(threads))])


def test_lock_cycle_from_faulthandler_stacks_alone_is_proven_by_the_source():
    """No py-spy, no thread ids: the `with` statements say both waits have no timeout."""
    main = thread(-1, [lib("join", "threading.py"), py("<module>", 30)], name="MainThread",
                  source="faulthandler")
    a = thread(-2, [py("load", 12), lib("run", "threading.py")], source="faulthandler",
               contexts=[with_lock("load", 12, "index_lock", "cache_lock", 10)])
    b = thread(-3, [py("save", 22), lib("run", "threading.py")], source="faulthandler",
               contexts=[with_lock("save", 22, "cache_lock", "index_lock", 20)])
    diagnosis = analyse(one_process(main, a, b))
    assert diagnosis.findings[0].code == "HANG004"
    assert diagnosis.proven
    assert "train.py:12" in diagnosis.findings[0].title
    assert "train.py:22" in diagnosis.findings[0].title


def test_lock_cycle_with_a_timed_acquire_is_possible_not_proven():
    a = thread(101, [py("load", 12)], syscall_name="futex", timed=True, futex=0x10,
               contexts=[with_lock("load", 12, "index_lock", "cache_lock", 10, untimed=False)])
    b = thread(102, [py("save", 22)], syscall_name="futex", timed=False, futex=0x20,
               contexts=[with_lock("save", 22, "cache_lock", "index_lock", 20)])
    main = thread(100, [lib("join", "threading.py"), py("<module>", 30)],
                  syscall_name="futex", timed=False)
    diagnosis = analyse(one_process(main, a, b))
    assert diagnosis.findings[0].code == "HANG004"
    assert not diagnosis.proven
    assert diagnosis.findings[0].title.startswith("Possible lock-order deadlock")


def test_locks_matched_by_last_name_are_not_proven_when_a_third_thread_may_hold_one():
    """T1 and T2 wait for `dst.lock`, holding `src.lock`; T3 sleeps inside `with
    src.lock:` — the lock T2 waits for may be T3's, which will be released."""
    def transfer(tid: int, futex: int) -> ThreadFacts:
        return thread(tid, [py("transfer", 8)], syscall_name="futex", timed=False,
                      futex=futex,
                      contexts=[with_lock("transfer", 8, "dst.lock", "src.lock", 7)])
    sleeper = thread(103, [py("audit", 30)], syscall_name="clock_nanosleep", timed=True,
                     contexts=[FrameContext("/app/train.py", 30, "audit", "time.sleep(60)",
                                            calls=["time.sleep"], holding=[LockSite(
                                                "src.lock", "/app/train.py", 29, "audit",
                                                kind="with")])])
    main = thread(100, [lib("join", "threading.py"), py("<module>", 40)],
                  syscall_name="futex", timed=False)
    diagnosis = analyse(one_process(main, transfer(101, 0x10), transfer(102, 0x20), sleeper))
    assert not diagnosis.proven


def test_a_thread_without_a_stack_does_not_break_the_analysis():
    main = thread(100, [lib("get", "queue.py"), py("<module>", 5)], syscall_name="futex",
                  timed=False)
    silent = ThreadFacts(tid=101, state="S", syscall_name="futex", timed=False)
    diagnosis = analyse(one_process(main, silent))
    assert diagnosis.findings and not diagnosis.proven
    assert diagnosis.findings[0].code == "HANG005"


def test_sleep_seen_by_faulthandler_only_is_sleeping_never_a_deadlock():
    main = thread(-1, [py("poll", 9)], name="MainThread", source="faulthandler",
                  contexts=[FrameContext("/app/train.py", 9, "poll", "time.sleep(600)",
                                         calls=["time.sleep"])])
    diagnosis = analyse(one_process(main))
    assert diagnosis.findings[0].code == "HANG011"
    assert not diagnosis.proven
    assert "deadlock" not in diagnosis.summary


def test_a_process_with_nothing_readable_falls_back_to_hang001():
    diagnosis = analyse(one_process(ThreadFacts(tid=100, state="S")))
    assert diagnosis.findings[0].code == "HANG001"
    assert not diagnosis.proven


def _pool(worker_frames: list[Frame], fates: list[Fate]) -> TreeFacts:
    caller = thread(100, [lib("wait", "threading.py"), lib("get", "multiprocessing/pool.py"),
                          lib("map", "multiprocessing/pool.py"), py("<module>", 18)],
                    syscall_name="futex", timed=False)
    worker = thread(201, worker_frames, syscall_name="read")
    return TreeFacts(taken=5.0, window=0.3, main_pid=100, fates=fates, processes=[
        ProcessFacts(pid=100, ppid=1, role="main", python=True, threads=[caller]),
        ProcessFacts(pid=201, ppid=100, role="forked from 100", python=True,
                     forked_from=100, threads=[worker])])


def test_pool_with_a_dead_worker_and_a_live_busy_one_is_not_proven():
    busy = [py("square", 9), lib("worker", "multiprocessing/pool.py"),
            lib("_bootstrap", "multiprocessing/process.py")]
    dead = Fate(pid=200, ppid=100, signal=9, ended=1.5, source="its parent pid 100 reaped it")
    diagnosis = analyse(_pool(busy, [dead]))
    assert diagnosis.findings[0].code == "HANG008"
    assert not diagnosis.proven  # the busy worker may still be running the lost task's peer


def test_pool_with_a_dead_worker_and_idle_live_ones_is_proven():
    idle = [lib("get", "multiprocessing/queues.py"), lib("worker", "multiprocessing/pool.py"),
            lib("_bootstrap", "multiprocessing/process.py")]
    dead = Fate(pid=200, ppid=100, signal=9, ended=1.5, oom_killed=True)
    diagnosis = analyse(_pool(idle, [dead]))
    assert diagnosis.findings[0].code == "HANG008" and diagnosis.proven
    assert "OOM killer" in diagnosis.findings[0].title


def _ranks(calls: dict[int, tuple[str, int]], world: int, local: int) -> TreeFacts:
    agent = thread(10, [lib("sleep", "time.py"), Frame(
        "python", "_invoke_run", "/x/site-packages/torch/distributed/elastic/agent/server/api.py",
        900)])
    processes = [ProcessFacts(pid=10, ppid=1, role="main", python=True, threads=[agent])]
    for rank, (op, line) in calls.items():
        frames = [Frame("python", op, "/x/site-packages/torch/distributed/distributed_c10d.py",
                        3000), py("step", line)]
        processes.append(ProcessFacts(
            pid=20 + rank, ppid=10, python=True,
            job={"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                 "LOCAL_WORLD_SIZE": str(local), "MASTER_PORT": "29500"},
            threads=[thread(20 + rank, frames, syscall_name="futex", timed=False)]))
    return TreeFacts(taken=5.0, window=0.3, main_pid=10, processes=processes)


def test_same_collective_from_different_lines_is_a_proven_mismatch():
    diagnosis = analyse(_ranks({0: ("all_reduce", 40), 1: ("all_reduce", 52)}, 2, 2))
    assert diagnosis.findings[0].code == "HANG009" and diagnosis.proven
    assert "train.py:40" in diagnosis.findings[0].title
    assert "train.py:52" in diagnosis.findings[0].title


def test_ranks_on_other_machines_are_named_but_never_proven():
    diagnosis = analyse(_ranks({0: ("all_reduce", 40), 1: ("all_reduce", 40)}, 4, 2))
    assert diagnosis.findings[0].code == "HANG010"
    assert not diagnosis.proven
    assert "ranks 2, 3" in diagnosis.findings[0].title


def test_a_child_that_ran_another_program_is_not_taken_for_a_dead_pool_worker():
    idle = [lib("get", "multiprocessing/queues.py"), lib("worker", "multiprocessing/pool.py"),
            lib("_bootstrap", "multiprocessing/process.py")]
    failed = Fate(pid=300, ppid=100, exit_code=1, command="git rev-parse HEAD")
    facts = _pool(idle, [failed])
    facts.processes[0].command = "python train.py"
    diagnosis = analyse(facts)
    assert diagnosis.findings[0].code != "HANG008"
    assert not diagnosis.proven
