"""Planted secrets never reach a report, in any format."""

from __future__ import annotations

import pytest
from checkutil import run_cli

SECRETS = {
    "OMP_SECRET_TOKEN": "plain-value-that-is-secret-42",  # captured prefix, secret-looking name
    "CUDA_API_KEY": "another-plain-secret-99",
    "TF_PASSWORD": "hunter2-but-longer",
}
TOKENS = [
    "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "AKIA" + "ABCDEFGHIJKLMNOP",
    "xoxb-" + "123456789012-abcdefghijkl",
    "sk-" + "proj-abcdefghijklmnopqrstuvwxyz012345",
    "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
]


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_no_secret_in_any_format(fmt, tmp_path):
    env = dict(SECRETS)
    # Token-shaped values hidden in innocent-looking variables and in an import traceback.
    env["LD_LIBRARY_PATH"] = f"/opt/lib:/home/u/{TOKENS[0]}/lib"
    env["XLA_FLAGS"] = f"--xla_dump_to=/tmp --auth={TOKENS[1]}"
    env["TORCH_HOME"] = f"https://user:{'s3cr3tpassw0rd'}@example.invalid/cache"
    (tmp_path / "leaky.py").write_text(
        "raise ImportError(" + repr(" ".join(TOKENS[2:])) + ")\n")
    env["PYTHONPATH"] = str(tmp_path)
    result = run_cli("check", "--import", "numpy,leaky", "--format", fmt, "--fail-on",
                     "never", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for value in [*SECRETS.values(), *TOKENS, "s3cr3tpassw0rd"]:
        assert value not in out, f"{value!r} leaked into the {fmt} report"
    assert "[REDACTED]" in out
    assert "OMP_SECRET_TOKEN" in out  # the name stays: the reader knows it was set
