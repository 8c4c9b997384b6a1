"""Planted secrets never leave numdoctor, whatever the command, whatever the format; their
benign look-alikes (file:line locations, digests, paths) all do.

Each command runs once, for real, through `every_format.py`: its own output (stdout, stderr,
--output, --report) is checked, and the report it made is rendered in all four formats
(text, JSON, Markdown, HTML). The secrets come in through the environment, the program's
command line, what the program prints and an import error's message.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from redaction_corpus import (
    ARGV,
    BENIGN,
    BENIGN_TEXT,
    ENV_SECRETS,
    ENV_SHAPED,
    HUGGING_FACE,
    LONG_PATH,
    PLANTED,
    SECRETS,
    leaks,
    lost,
)

from numdoctor.redact import REDACTED
from numdoctor.render import FORMATS
from numdoctor.snapshot.environment import is_relevant

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow

# Look-alikes in the environment: a name that merely contains KEYS, a path under a
# `*_FILE` name, a long path full of secret words.
BENIGN_ENV = {"PYTORCH_KEYS_X": "1", "TORCH_PASSWORD_FILE": "/run/secrets/db_password",
              "TORCH_EXTENSIONS_DIR": LONG_PATH}
ENVIRONMENT = {**ENV_SECRETS, **ENV_SHAPED, **BENIGN_ENV}
# The names of the secrets the snapshot shows stay (the reader knows they were set); a
# variable the numerical stack does not read (TF_PASSWORD) is not shown at all.
BENIGN_ENV_SHOWN = ["PYTORCH_KEYS_X", "/run/secrets/db_password", LONG_PATH,
                    *(name for name in ENV_SECRETS if is_relevant(name))]

LEAKY_MODULE = "leaky_secret_tokens"
PROGRAM = "secret_token_keys.py"  # a file name made of secret words: its lines must show
PROGRAM_SOURCE = f"""\
import sys, time
sys.stderr.write({PLANTED + chr(10) + BENIGN_TEXT + chr(10)!r})
sys.stderr.flush()

def wait_for_the_key():
    time.sleep(600)

def crash_with_the_token():
    import ctypes
    ctypes.string_at(0)

wait_for_the_key() if sys.argv[1] == "hang" else crash_with_the_token()
"""
HANG_LINE, CRASH_LINE = 6, 10


def _environment(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KMP_DUPLICATE_LIB_OK", None)  # threadpoolctl in this process may have set it
    env.update(ENVIRONMENT)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), env.get("PYTHONPATH", "")])
    env["TMPDIR"] = str(tmp)  # run saves reports there
    return env


class Outputs:
    """What one command wrote: stdout, stderr, its output file, the four renderings."""

    def __init__(self, result: subprocess.CompletedProcess, out: Path,
                 output_file: Path | None) -> None:
        self.result = result
        self.stdout, self.stderr = result.stdout, result.stderr
        self.file = output_file.read_text() if output_file else ""
        self.formats = {fmt: (out / f"report.{fmt}").read_text() for fmt in FORMATS
                        if (out / f"report.{fmt}").exists()}

    def all_text(self) -> dict[str, str]:
        return {"stdout": self.stdout, "stderr": self.stderr, "output file": self.file,
                **self.formats}

    def assert_no_leak(self, *, stderr: str | None = None) -> None:
        texts = self.all_text()
        if stderr is not None:
            texts["stderr"] = stderr
        assert set(self.formats) == set(FORMATS), self.stderr[-3000:]
        for where, text in texts.items():
            assert leaks(text) == [], f"secrets leaked into {where}"
        for fmt, text in self.formats.items():
            assert REDACTED in text, fmt

    def assert_kept(self, items: list[str]) -> None:
        for fmt, text in self.formats.items():
            assert lost(text, items) == [], f"look-alikes lost from the {fmt} report"

    def assert_environment_kept(self) -> None:
        """Each benign variable with its value, as the format writes it."""
        for fmt, text in self.formats.items():
            for name, value in BENIGN_ENV.items():
                shown = f'"{name}": "{value}"' if fmt == "json" else f"{name}={value}"
                assert lost(text, [shown]) == [], f"{shown} lost from the {fmt} report"


def _numdoctor(tmp: Path, name: str, *args: str, output: str | None = None,
               timeout: float = 300) -> Outputs:
    out = tmp / name
    out.mkdir()
    output_file = out / output if output else None
    argv = [a.replace("{output}", str(output_file)) for a in args]
    result = subprocess.run([sys.executable, str(HERE / "every_format.py"), str(out), *argv],
                            capture_output=True, text=True, env=_environment(tmp),
                            timeout=timeout, cwd=tmp)
    return Outputs(result, out, output_file)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Outputs]:
    """Every command, run once each, three at a time (most of them wait on a hang)."""
    tmp = tmp_path_factory.mktemp("redaction")
    (tmp / f"{LEAKY_MODULE}.py").write_text(
        f"raise ImportError({PLANTED + chr(10) + BENIGN_TEXT!r})\n")
    (tmp / PROGRAM).write_text(PROGRAM_SOURCE)
    program = [sys.executable, str(tmp / PROGRAM)]
    probe_envs = ["--env", f"TF_PASSWORD={ENV_SECRETS['TF_PASSWORD']}",
                  "--env", f"HF_TOKEN={HUGGING_FACE}", "--env", "KMP_DUPLICATE_LIB_OK=TRUE"]
    commands = {
        "check": ("check", "--import", f"numpy,{LEAKY_MODULE}", "--fail-on", "never",
                  "--format", "markdown", "--output", "{output}"),
        "run hang": ("run", "--hang-timeout", "2", "--report", "{output}", "--", *program,
                     "hang", *ARGV),
        "run crash": ("run", "--report", "{output}", "--format", "json", "--", *program,
                      "crash", *ARGV),
        "probe": ("probe", "--import", "numpy", "--op", "numpy.matmul", "--orders", "given",
                  *probe_envs, "--no-minimize", "--fail-on", "never", "--format", "json",
                  "--output", "{output}"),
        "fleet": ("fleet", "--local", "1", "--import", f"numpy,{LEAKY_MODULE}",
                  "--fail-on", "never", "--format", "text", "--output", "{output}"),
        "fleet probe": ("fleet", "--local", "1", "--probe=--import numpy --op numpy.matmul "
                        "--orders given --no-minimize " + " ".join(probe_envs),
                        "--fail-on", "never", "--format", "markdown", "--output", "{output}"),
    }
    outputs = {"check": "report.md", "run hang": "report.txt", "run crash": "report.json",
               "probe": "report.json", "fleet": "report.txt", "fleet probe": "report.md"}
    if not _have_distributed():
        del commands["fleet"], commands["fleet probe"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_numdoctor, tmp, name, *args, output=outputs[name])
                   for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def _have_distributed() -> bool:
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


def _numdoctor_lines(stderr: str) -> str:
    """numdoctor's own lines; the rest of stderr is the program's, passed through as is."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("numdoctor"))


def test_check(runs):
    outputs = runs["check"]
    assert outputs.result.returncode == 0, outputs.stderr[-3000:]
    outputs.assert_no_leak()
    outputs.assert_kept([*BENIGN, *BENIGN_ENV_SHOWN])
    outputs.assert_environment_kept()
    assert leaks(outputs.file) == [] and "CUDA_API_KEY=[REDACTED]" in outputs.file


def test_run_of_a_hanging_program(runs):
    outputs = runs["run hang"]
    assert outputs.result.returncode == 124, outputs.stderr[-3000:]
    # The program's own stderr passes through untouched (it printed the secrets itself);
    # numdoctor's summary lines are checked.
    summary = _numdoctor_lines(outputs.stderr)
    outputs.assert_no_leak(stderr=summary)
    location = f"{PROGRAM}:{HANG_LINE}"
    # the summary names the hang's place, never blanked; the report shows the command masked
    assert location in summary and f"{PROGRAM}:{REDACTED}" not in summary
    assert f"--password {REDACTED}" in outputs.file
    outputs.assert_kept([*BENIGN, *BENIGN_ENV_SHOWN, location])
    outputs.assert_environment_kept()
    assert location in outputs.file and leaks(outputs.file) == []


def test_run_of_a_crashing_program(runs):
    outputs = runs["run crash"]
    assert outputs.result.returncode == 128 + 11, outputs.stderr[-3000:]
    outputs.assert_no_leak(stderr=_numdoctor_lines(outputs.stderr))
    outputs.assert_kept([*BENIGN, *BENIGN_ENV_SHOWN, PROGRAM,
                         f"line {CRASH_LINE} in crash_with_the_token"])


def test_probe(runs):
    outputs = runs["probe"]
    assert outputs.result.returncode == 0, outputs.stderr[-3000:]
    outputs.assert_no_leak()
    outputs.assert_kept(["KMP_DUPLICATE_LIB_OK=TRUE", "TF_PASSWORD=[REDACTED]",
                         "HF_TOKEN=[REDACTED]"])


def test_fleet(runs):
    if "fleet" not in runs:
        pytest.skip("fleet mode needs dask.distributed")
    outputs = runs["fleet"]
    assert outputs.result.returncode == 0, outputs.stderr[-3000:]
    outputs.assert_no_leak()
    outputs.assert_kept([*BENIGN_ENV_SHOWN, "secret_cmd.py:3", "tokenizer_keys.py:12"])
    outputs.assert_environment_kept()


def test_fleet_probe(runs):
    if "fleet probe" not in runs:
        pytest.skip("fleet mode needs dask.distributed")
    outputs = runs["fleet probe"]
    assert outputs.result.returncode == 0, outputs.stderr[-3000:]
    outputs.assert_no_leak()
    outputs.assert_kept(["KMP_DUPLICATE_LIB_OK=TRUE", "TF_PASSWORD=[REDACTED]",
                         "HF_TOKEN=[REDACTED]", *BENIGN_ENV_SHOWN])
    outputs.assert_environment_kept()


# -- the pytest plugin ------------------------------------------------------------------------

def test_pytest_plugin_failure_report_and_summary(pytester, monkeypatch):
    """A hanging test that printed secrets and started a child with secrets in its argv."""
    monkeypatch.delenv("KMP_DUPLICATE_LIB_OK", raising=False)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_secret_tokens=textwrap.dedent(f"""
        import subprocess, sys, time

        def test_waits_for_the_key():
            print({PLANTED!r})
            print({BENIGN_TEXT!r}, file=sys.stderr)
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                              *{ARGV!r}])
            time.sleep(300)
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--numdoctor",
                                           "--numdoctor-hang-timeout", "2", "-ra",
                                           timeout=180)
    result.assert_outcomes(failed=1)
    out = result.stdout.str() + result.stderr.str()
    assert leaks(out) == []
    assert "no result within 2 s" in out
    assert f"--password {REDACTED}" in out  # the child's command line, in "killed: ..."
    assert lost(out, BENIGN) == []  # the captured stderr, shown in the failure report
    assert "test_secret_tokens.py:" in out


# -- numdoctor.isolate() -----------------------------------------------------------------------

ISOLATED = f"""
import sys, time

def wait_for_the_key(password):
    sys.stderr.write({PLANTED + chr(10) + BENIGN_TEXT + chr(10)!r})
    sys.stderr.flush()
    time.sleep(600)
"""


def test_isolate_exception_and_its_report(tmp_path):
    (tmp_path / "isolated_secret_tokens.py").write_text(ISOLATED)
    code = textwrap.dedent(f"""
        import numdoctor, isolated_secret_tokens
        from numdoctor.render import FORMATS, render
        try:
            numdoctor.isolate(isolated_secret_tokens.wait_for_the_key, {ARGV[1]!r},
                              hang_timeout=2)
        except numdoctor.HangError as exc:
            print("@@str@@" + str(exc))
            for fmt in FORMATS:
                print(f"@@{{fmt}}@@" + render(exc.report, fmt))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_environment(tmp_path), timeout=180, cwd=tmp_path)
    parts = _parts(result.stdout)
    assert set(parts) == {"str", *FORMATS}, result.stderr[-3000:]
    for where, text in parts.items():
        assert leaks(text) == [], where
    assert "isolated_secret_tokens.py:" in parts["str"]
    for fmt in FORMATS:
        assert lost(parts[fmt], BENIGN) == [], fmt


def _parts(stdout: str) -> dict[str, str]:
    chunks = stdout.split("@@")
    return {chunks[i]: chunks[i + 1] for i in range(1, len(chunks) - 1, 2)}


# -- Jupyter ---------------------------------------------------------------------------------------

def test_jupyter_reports(monkeypatch):
    pytest.importorskip("IPython", reason="IPython is not installed")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    assert ip.run_cell("%load_ext numdoctor").success
    shown = []
    with capture_output() as captured:
        ip.run_cell("%numdoctor")
        ip.run_cell("%%numdoctor_isolate --hang-timeout 2\n"
                    f"import sys, time\nsys.stderr.write({PLANTED + chr(10) + BENIGN_TEXT!r})\n"
                    "sys.stderr.flush()\ntime.sleep(600)\n")
    for output in captured.outputs:
        shown += list(output.data.values())
    assert len(shown) == 6  # text, HTML and Markdown of each report
    for text in shown:
        assert leaks(text) == []
    check_text, cell_text = shown[0], shown[3]
    assert "CUDA_API_KEY" in check_text and REDACTED in check_text
    assert lost(cell_text, BENIGN) == []
    assert leaks(str(ip.user_ns.get("_exception", ""))) == []
    assert SECRETS  # the corpus is not empty
