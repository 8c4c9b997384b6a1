"""The two halves of collecting: live facts read in the inspected process, assembled elsewhere.

`numdoctor check` reads the live facts in its collector child and assembles the snapshot in
the parent; `numdoctor.check()` does both in one process. Both must describe the same thing.
"""

from __future__ import annotations

import json

from checkutil import check_json, run_python


def test_isolated_and_in_process_collection_agree_on_the_facts():
    code = """
        import json, numpy, scipy.linalg
        numpy.linalg.svd(numpy.ones((300, 300)))
        from numdoctor.snapshot.collect import collect
        print(json.dumps(collect().to_dict()))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    here = json.loads(done.stdout)
    isolated = check_json("--import", "numpy,scipy.linalg")["snapshot"]

    def libraries(snapshot: dict) -> set[tuple]:
        return {(lib["path"], lib["vendor"], lib["distribution"], lib["num_threads"])
                for lib in snapshot["libraries"]}

    assert libraries(isolated) == libraries(here)
    assert {f["name"]: f["distribution"] for f in isolated["frameworks"]} == \
        {f["name"]: f["distribution"] for f in here["frameworks"]} == \
        {"numpy": "numpy", "scipy": "scipy"}
    assert isolated["binary"]["numpy"] == here["binary"]["numpy"]
    assert isolated["binary"]["numpy"]["loaded"] is True
    assert isolated["system"]["effective_cpus"] == here["system"]["effective_cpus"]
    assert isolated["collected_by"] == "subprocess"


def test_live_facts_cross_a_pipe_as_json_and_change_nothing():
    code = """
        import json, os, sys, numpy
        before = dict(os.environ), sorted(sys.modules)
        from numdoctor.snapshot.live import live_facts
        loaded = set(sys.modules)
        facts = json.loads(json.dumps(live_facts()))
        assert dict(os.environ) == before[0], "the environment changed"
        new = sorted(set(sys.modules) - loaded - {"threadpoolctl"})
        assert "multiprocessing" not in sys.modules, new
        print(json.dumps(facts))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["process"]["start_method"] == "fork"
    assert facts["process"]["start_method_explicit"] is False
    assert any(lib["vendor"] == "openblas" for lib in facts["libraries"])
    assert facts["numpy"]["loaded"] is True
    assert any(p.endswith(".so") for p in facts["mapped"])


def test_start_method_set_by_the_program_is_reported():
    code = """
        import json, multiprocessing
        multiprocessing.set_start_method("spawn")
        from numdoctor.snapshot.live import live_facts
        print(json.dumps(live_facts(threadpools=False)["process"]))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    process = json.loads(done.stdout)
    assert process["start_method"] == "spawn" and process["start_method_explicit"] is True


def test_library_file_names_are_classified_by_family_and_vendor():
    from numdoctor.snapshot.libraries import classify

    expected = {
        "libgomp-a34b3233.so.1.0.0": ("openmp", "gnu"),
        "libgomp-plugin-nvptx.so.1": None,
        "libomp-14.so.5": ("openmp", "llvm"),
        "libiomp5.so": ("openmp", "intel"),
        "libscipy_openblas64_-32a4b2a6.so": ("blas", "openblas"),
        "libopenblasp-r0-2f7c42d4.3.18.so": ("blas", "openblas"),
        "libmkl_rt.so.2": ("blas", "mkl"),
        "libmkl_intel_thread.so.2": None,  # a threading layer, reported with MKL itself
        "liblapack.so.3": ("blas", "reference"),
        "libcublasLt.so.12": ("cuda", "cublasLt"),
        "libcublas.so.12": ("cuda", "cublas"),
        "libcuda.so.1": ("cuda", "driver"),
        "libstdc++.so.6.0.30": ("cxx", "libstdc++"),
        "libfoo.so": None,
    }
    assert {name: classify(f"/opt/lib/{name}") for name in expected} == expected


def test_isolated_check_from_a_process_that_is_not_clean_spawns_its_collector():
    # numpy is imported here, so a fork would not be a fresh interpreter: the collector is
    # spawned, and its live facts come back over the same pipe.
    code = """
        import json, numpy, numdoctor
        from numdoctor.snapshot import isolated
        assert not isolated._can_fork(["scipy"])
        from numdoctor.render import report_data
        print(json.dumps(report_data(numdoctor.check(["scipy.linalg"]))))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)["snapshot"]
    assert snapshot["collected_by"] == "subprocess"
    assert [(i["module"], i["status"]) for i in snapshot["imports"]] == [("scipy.linalg", "ok")]
    assert {f["name"] for f in snapshot["frameworks"]} == {"numpy", "scipy"}
    assert snapshot["process"]["pid"] != 0


def test_check_api_takes_the_abi_scan_options():
    code = """
        import json, numpy, numdoctor
        print(json.dumps(numdoctor.check(scan_abi=True).snapshot["binary"]["scan"]))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "environment"


def test_a_forked_collector_counts_its_own_threads():
    # A fresh environment-free check: the forked collector has one thread, its own.
    code = """
        import json, os
        from numdoctor.snapshot.live import live_facts
        pid = os.fork()
        if pid == 0:
            process = live_facts(threadpools=False)["process"]
            print(json.dumps([process["threads_total"], process["python_threads"]]))
            os._exit(0)
        os.waitpid(pid, 0)
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 1]


def test_work_done_while_the_child_imports_runs_at_the_lowest_priority_and_may_fail():
    code = """
        import json, os, threading
        from numdoctor.snapshot.isolated import collect_isolated
        seen = {"before": os.getpriority(os.PRIO_PROCESS, 0)}
        def meanwhile():
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            seen["main"] = threading.current_thread() is threading.main_thread()
        snapshot = collect_isolated(["json"], while_waiting=meanwhile)
        seen["main_nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["imports"] = [a.status for a in snapshot.imports]
        def fails():
            raise LookupError("from the caller's work")
        try:
            collect_isolated(["json"], while_waiting=fails)
        except LookupError as exc:
            seen["raised"] = str(exc)
        print(json.dumps(seen))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # The caller's own priority is untouched; its error reaches it.
    assert seen["main_nice"] == seen.pop("before")
    assert seen == {"nice": 19, "main": False, "main_nice": seen["main_nice"],
                    "imports": ["ok"], "raised": "from the caller's work"}
