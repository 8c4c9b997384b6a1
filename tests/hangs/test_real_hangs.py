"""Real hangs of every class, observed as `numdoctor run` observes them: the headline names
the root (its file:line and its process role), the class's code, whether the hang is certain,
and never a misleading class ("spins" for a blocked thread, "deadlock" for a mere wait).

Expected lines come from `# expect: <label>` comments in the programs, never from the test.
"""

from __future__ import annotations

import pytest
from hang_helpers import Hung, needs_tf, needs_torch, needs_torchrun

pytestmark = pytest.mark.slow


def never_misleading(hung: Hung) -> None:
    """A wait is never called a deadlock, and nothing blocked is said to spin."""
    words = " ".join(f"{f.title} {' '.join(f.evidence)}" for f in hung.diagnosis.findings)
    assert "spins" not in words.lower(), hung.text()
    if not hung.diagnosis.proven:
        assert "deadlock" not in hung.first.title.lower(), hung.text()
        assert "deadlock" not in hung.diagnosis.summary.lower(), hung.text()
        assert hung.first.code not in ("HANG004", "HANG009", "FORK001"), hung.text()


# -- lock-order deadlocks ------------------------------------------------------------------------

@pytest.mark.hang_program("lock_order")
def test_two_global_locks_in_opposite_order_is_a_proven_lock_cycle(hung):
    first = hung.first
    assert first.code == "HANG004", hung.text()
    assert hung.diagnosis.proven
    assert hung.where("waits forward") in first.title
    assert hung.where("waits backward") in first.title
    assert "holding `first`" in first.title and "holding `second`" in first.title
    evidence = "\n".join(first.evidence)
    assert f"with first: at {hung.program.name}:" in evidence  # where the held lock was taken
    assert "no timeout" in evidence
    assert hung.diagnosis.root.where in (hung.where("waits forward"), hung.where("waits backward"))
    assert "thread" in hung.diagnosis.root.role


@pytest.mark.hang_program("lock_order_rlock")
def test_transfer_between_rlock_attributes_in_one_method_is_a_proven_cycle(hung):
    """Both threads wait at the same line of the same method: `target.guard` is the lock
    the other thread holds as `source.guard`."""
    first = hung.first
    assert first.code == "HANG004", hung.text()
    assert hung.diagnosis.proven
    assert first.title.count(hung.where("waits")) == 2
    assert "`source.guard`" in first.title
    names = {"'alice-to-bob'", "'bob-to-alice'"}
    assert all(name in first.title for name in names)


@pytest.mark.hang_program("lock_condition")
def test_condition_used_as_lock_and_local_lock_form_a_proven_cycle(hung):
    first = hung.first
    assert first.code == "HANG004", hung.text()
    assert hung.diagnosis.proven
    assert hung.where("waits main") in first.title and hung.where("waits helper") in first.title
    evidence = "\n".join(first.evidence)
    assert "cache_lock.acquire() at lock_condition.py:" in evidence  # held by acquire()
    assert "with state: at lock_condition.py:" in evidence


# -- consumers starved by their producers ------------------------------------------------------

@pytest.mark.hang_program("queue_no_producer")
def test_queue_without_producer_names_the_get_and_says_nothing_feeds_it(hung):
    first = hung.first
    assert first.code == "HANG005", hung.text()
    assert not hung.diagnosis.proven
    assert hung.where("root") in first.title
    assert "no other thread" in first.title
    assert hung.diagnosis.root.tid == hung.pid
    never_misleading(hung)


@pytest.mark.hang_program("mp_queue_stuck_producer")
def test_multiprocessing_queue_consumer_leads_to_the_blocked_producer_process(hung):
    first = hung.first
    assert first.code == "HANG005", hung.text()
    assert hung.where("producer") in first.title
    root = hung.diagnosis.root
    assert root.pid != hung.pid and root.where == hung.where("producer")
    assert "multiprocessing.Process running produce" in root.role
    evidence = "\n".join(first.evidence)
    assert hung.where("consumer") in evidence
    assert "holds `table_lock`" in evidence  # the parent holds what the producer waits for
    never_misleading(hung)


@pytest.mark.hang_program("mp_pipe_stuck_producer")
def test_pipe_reader_leads_to_the_spawned_process_holding_the_other_end(hung):
    first = hung.first
    assert first.code == "HANG005", hung.text()
    root = hung.diagnosis.root
    assert root.where == hung.where("producer") and root.pid != hung.pid
    assert "resource tracker" not in root.role
    assert hung.where("consumer") in "\n".join(first.evidence)
    never_misleading(hung)


@pytest.mark.hang_program("futures_thread")
def test_thread_pool_future_leads_to_the_task_blocked_in_user_code(hung):
    first = hung.first
    assert first.code == "HANG005", hung.text()
    root = hung.diagnosis.root
    assert root.where == hung.where("root")
    assert "ThreadPoolExecutor" in root.role
    assert hung.where("caller") in first.title
    assert "waits for it in turn" in first.title  # the only other thread waits for the task
    never_misleading(hung)


@pytest.mark.hang_program("futures_process")
def test_process_pool_future_leads_to_the_worker_process_and_its_line(hung):
    first = hung.first
    assert first.code == "HANG005", hung.text()
    root = hung.diagnosis.root
    assert root.where == hung.where("root")
    assert "ProcessPoolExecutor worker" in root.role and root.pid != hung.pid
    assert "only its own process holds the other end" in first.title
    never_misleading(hung)


@pytest.mark.hang_program("busy_background", idle=False)
def test_blocked_main_thread_beside_a_busy_thread_is_waiting_not_spinning(hung):
    first = hung.first
    assert first.code == "HANG005", hung.text()
    assert hung.where("main") in first.title
    root = hung.diagnosis.root
    assert "'cruncher'" in root.role and root.where == hung.where("busy")
    assert "busy" in first.title
    never_misleading(hung)


# -- frameworks --------------------------------------------------------------------------------

@needs_torch
@pytest.mark.hang_program("dataloader_stuck")
def test_dataloader_names_the_stuck_worker_its_getitem_line_and_timeout(hung):
    first = hung.first
    assert first.code == "HANG006", hung.text()
    assert not hung.diagnosis.proven
    root = hung.diagnosis.root
    assert root.where == hung.where("root")
    assert "DataLoader worker 0" in root.role
    assert f"DataLoader worker 0 (pid {root.pid})" in first.title
    assert "__getitem__" in first.title and hung.where("loop") in first.title
    evidence = "\n".join(first.evidence)
    assert "DataLoader worker 1" in evidence and "idle" in evidence
    assert "timeout=" in evidence
    never_misleading(hung)


@needs_tf
@pytest.mark.hang_program("tf_generator")
def test_tf_data_generator_blocked_on_an_empty_queue(hung):
    first = hung.first
    assert first.code == "HANG007", hung.text()
    root = hung.diagnosis.root
    assert root.where == hung.where("root") and "tf.data pipeline thread" in root.role
    assert "generator gen" in first.title and hung.where("loop") in first.title
    never_misleading(hung)


@needs_tf
@pytest.mark.hang_program("tf_py_function")
def test_tf_py_function_waiting_for_a_lock_the_loop_holds(hung):
    first = hung.first
    assert first.code == "HANG007", hung.text()
    root = hung.diagnosis.root
    assert root.where == hung.where("root")
    assert "normalise" in first.title and "`stats_lock`" in first.title
    assert "holds `stats_lock`" in "\n".join(first.evidence)
    never_misleading(hung)


@pytest.mark.hang_program("pool_killed_worker")
def test_pool_map_after_a_worker_was_killed_is_proven_with_the_dead_pid(hung):
    first = hung.first
    assert first.code == "HANG008", hung.text()
    assert hung.diagnosis.proven
    assert "SIGKILL" in first.title
    killed = [f for f in hung.facts.fates if f.signal == 9]
    assert killed and f"pid {killed[0].pid}" in first.title
    assert hung.diagnosis.root.pid == killed[0].pid
    evidence = "\n".join(first.evidence)
    assert hung.where("caller") in evidence and "idle" in evidence
    assert "ProcessPoolExecutor" in first.fix


@needs_torchrun
@pytest.mark.hang_program("dist_mismatch", torchrun=True)
def test_torchrun_ranks_in_different_collectives_are_a_proven_mismatch(hung):
    first = hung.first
    assert first.code == "HANG009", hung.text()
    assert hung.diagnosis.proven
    assert f"rank 0 waits in barrier ({hung.where('rank 0')})" in first.title
    assert f"rank 1 in all_reduce ({hung.where('rank 1')})" in first.title
    root = hung.diagnosis.root
    assert root.pid in hung.pids(job_rank="1") and root.where == hung.where("rank 1")
    assert "[gloo]" in "\n".join(first.evidence)


@needs_torchrun
@pytest.mark.hang_program("dist_missing_rank", torchrun=True)
def test_torchrun_rank_that_exited_before_joining_is_a_proven_missing_rank(hung):
    first = hung.first
    assert first.code == "HANG010", hung.text()
    assert hung.diagnosis.proven
    assert "Rank 1 never joined" in first.title
    assert hung.where("rank 0") in first.title and "init_process_group" in first.title
    assert "exited with status 0" in first.title
    assert hung.diagnosis.root.role.startswith("rank 1 (pid ")


@pytest.mark.hang_program("omp_fork", "{omp_library}")
def test_forked_child_after_an_openmp_pool_is_fork001_through_the_graph(hung):
    first = hung.first
    assert first.code == "FORK001", hung.text()
    assert hung.diagnosis.proven
    child = next(p.pid for p in hung.facts.processes if p.forked_from == hung.pid)
    assert first.where == f"pid {child}" and hung.diagnosis.root.pid == child
    assert hung.diagnosis.root.where == hung.where("child")
    evidence = "\n".join(first.evidence)
    assert "libgomp" in evidence and hung.where("parent") in evidence


# -- merely waiting ----------------------------------------------------------------------------

@pytest.mark.hang_program("sleep_forever")
def test_long_sleep_is_sleeping_at_its_line_with_time_left_never_a_deadlock(hung):
    first = hung.first
    assert first.code == "HANG011", hung.text()
    assert not hung.diagnosis.proven
    assert hung.where("root") in first.title and "left" in first.title
    never_misleading(hung)


@pytest.mark.hang_program("stdin_wait")
def test_waiting_on_stdin_is_input_never_a_deadlock(hung):
    first = hung.first
    assert first.code == "HANG012", hung.text()
    assert not hung.diagnosis.proven
    assert "stdin" in first.title and hung.where("root") in first.title
    assert "outside the tree" in first.title  # the harness holds the other end
    never_misleading(hung)


@pytest.mark.hang_program("tcp_silent_server", "{silent_server}")
def test_waiting_on_a_tcp_server_that_never_answers_names_the_server(hung):
    first = hung.first
    assert first.code == "HANG012", hung.text()
    assert not hung.diagnosis.proven
    assert hung.where("root") in first.title
    assert "has not accepted the connection" in first.title
    never_misleading(hung)


@pytest.mark.hang_program("child_wait")
def test_waiting_on_a_child_names_the_child_and_what_it_does(hung):
    first = hung.first
    assert first.code == "HANG013", hung.text()
    assert not hung.diagnosis.proven
    assert "`sleep 1000`" in first.title and "sleeps" in first.title
    assert hung.where("root") in first.title
    never_misleading(hung)


@pytest.mark.hang_program("spin_loop", idle=False)
def test_a_real_busy_loop_is_reported_with_the_busy_line(hung):
    first = hung.first
    assert first.code == "HANG002", hung.text()
    assert not hung.diagnosis.proven
    # A loop has more than one line: the sample may catch any of them.
    assert hung.where("root") in first.title or hung.where("loop") in first.title
    assert "busy" in first.title


@pytest.mark.hang_program("slow_progress", idle=False)
def test_a_slow_but_progressing_loop_is_never_proven_nor_a_deadlock(hung):
    assert not hung.diagnosis.proven
    never_misleading(hung)
    assert hung.first.code in ("HANG002", "HANG011"), hung.text()


@pytest.mark.hang_program("queue_producer_blocked")
def test_queue_consumer_holding_the_lock_its_producer_needs(hung):
    first = hung.first
    assert first.code == "HANG005", hung.text()
    root = hung.diagnosis.root
    assert root.where == hung.where("producer") and "'producer'" in root.role
    assert hung.where("consumer") in first.title
    assert "holds `self.lock`" in "\n".join(first.evidence)
    never_misleading(hung)


@pytest.mark.hang_program("lock_cycle_three")
def test_three_threads_each_taking_the_next_ones_lock_is_a_proven_cycle(hung):
    """The locks are parameters (`mine`, `following`): matched by who holds which name is
    impossible, so this is proven by the wait-for cycle of three untimed waits."""
    first = hung.first
    assert first.code == "HANG004", hung.text()
    assert "among 3 threads" in first.title
    assert first.title.count(hung.where("waits")) == 3
