"""The redaction rules one by one, as docs/redaction.md states them (its tables are tested)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from redaction_corpus import (
    AWS_ID,
    AWS_SECRET,
    BENIGN,
    BENIGN_TEXT,
    ENV_SECRETS,
    ENV_SHAPED,
    GIT_HASH,
    HUGGING_FACE,
    OPENAI,
    PEM,
    PLANTED,
    SECRETS,
    leaks,
)

from numdoctor.redact import (
    REDACTED,
    is_secret_name,
    redact_argv,
    redact_environment,
    redact_text,
    redact_tree,
)
from numdoctor.redact.names import Kind

DOC = Path(__file__).parents[2] / "docs" / "redaction.md"


def _table(section: str) -> list[list[str]]:
    body = DOC.read_text().split(section, 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.split(" | ")]
            for line in body.splitlines() if line.startswith("| ") and "---" not in line][1:]


def _code(cell: str) -> str | None:
    """The text of a cell that is exactly one code span."""
    match = re.fullmatch(r"\|?\s*`([^`]*)`\s*\|?", cell)
    return match[1] if match else None


MASKED = [(_code(row[1]), _code(row[2])) for row in _table("## What is masked")
          if _code(row[1]) and _code(row[2])]
UNTOUCHED = [_code(row[1]) for row in _table("## What is never touched") if _code(row[1])]


def test_the_documented_tables_are_all_tested():
    assert len(MASKED) >= 15 and len(UNTOUCHED) >= 10


@pytest.mark.parametrize(("before", "after"), MASKED)
def test_each_documented_rule_masks_as_documented(before, after):
    assert redact_text(before) == after


@pytest.mark.parametrize("text", UNTOUCHED)
def test_each_documented_look_alike_stays(text):
    assert redact_text(text) == text


def test_the_issue_reproduction():
    """Issue 17: the password after --password leaked; secret_cmd.py's line was blanked."""
    command = (f"pid 7849 (python secret_cmd.py --api-key {OPENAI} --token=abcdefghijk1234 "
               "--password hunter2horse) [main]: blocked in clock_nanosleep (libc.so.6), "
               "called from wait_forever (secret_cmd.py:3)")
    assert redact_text(command) == (
        "pid 7849 (python secret_cmd.py --api-key [REDACTED] --token=[REDACTED] "
        "--password [REDACTED]) [main]: blocked in clock_nanosleep (libc.so.6), "
        "called from wait_forever (secret_cmd.py:3)")
    located = 'File "/srv/tokenizer_keys.py", line 12, in get_keys\n  (tokenizer_keys.py:12)'
    assert redact_text(located) == located


def test_the_whole_corpus():
    assert leaks(redact_text(PLANTED)) == []
    assert redact_text(BENIGN_TEXT) == BENIGN_TEXT


@pytest.mark.parametrize(("name", "secret"), [
    # by their last word
    ("HF_TOKEN", True), ("GITHUB_TOKEN", True), ("AWS_SECRET_ACCESS_KEY", True),
    ("AWS_SESSION_TOKEN", True), ("WANDB_API_KEY", True), ("OPENAI_KEY", True),
    ("PGPASSWORD", True), ("MYSQL_PWD", True), ("DB_PASS", True), ("REDIS_PASSWORD", True),
    ("SENTRY_DSN", True), ("GOOGLE_APPLICATION_CREDENTIALS", True), ("PASSWORD2", True),
    ("TOKEN_B64", True), ("AZURE_STORAGE_CONNECTION_STRING", True), ("clientSecret", True),
    ("apiKey", True), ("db.password", True), ("X-Api-Key", True), ("Authorization", True),
    ("access_token", True), ("refresh_token", True), ("private_key", True),
    # what they merely contain
    ("KMP_DUPLICATE_LIB_OK", False), ("TOKENIZERS_PARALLELISM", False),
    ("PYTORCH_KEYS_X", False), ("MAX_TOKENS", False), ("TOKEN_FILE", False),
    ("PASSWORD_PATH", False), ("API_KEY_ID", False), ("AUTH_TYPE", False),
    ("SSH_AUTH_SOCK", False), ("PWD", False), ("secret_cmd.py", False),
    ("tokenizer_keys.py", False), ("get_keys", False), ("eos_token", False),
    ("pad_token_id", False), ("max_token", False), ("is_secret", False),
    ("no_password", False), ("key", False), ("sort_key", False), ("rng_key", False),
    ("SORT_KEY", False), ("PUBLIC_KEY", False), ("keyring", False), ("passthrough", False),
    ("google-auth", False), ("", False),
])
def test_names(name, secret):
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(("flag", "secret"), [
    ("--password", True), ("--key", True), ("--pass", True), ("-pass", True),
    ("-passin", True), ("--wandb-key", True), ("--hf_token", True), ("--api-key", True),
    ("--max-tokens", False), ("--sort-key", False), ("--keys", False), ("-k", False),
    ("-p", False), ("--tokenizer", False), ("--no-password", False),
])
def test_flags(flag, secret):
    assert is_secret_name(flag, Kind.FLAG) is secret


def test_query_parameters_have_their_own_short_names():
    assert is_secret_name("sig", Kind.QUERY) and is_secret_name("key", Kind.QUERY)
    assert redact_text("https://x.blob.core.windows.net/c/f?sv=2024&sig=abc%2Fdef&se=1") == \
        "https://x.blob.core.windows.net/c/f?sv=2024&sig=[REDACTED]&se=1"


def test_an_argv_list_masks_the_argument_after_a_secret_flag():
    argv = ["python", "train.py", "--password", "hunter2horse", "--epochs", "3",
            "--token=abc", "--user", "alice:pw1", "--key", "/etc/ssl/k.pem",
            "--max-tokens", "512", "-u", "1000:1000"]
    assert redact_argv(argv) == [
        "python", "train.py", "--password", REDACTED, "--epochs", "3",
        f"--token={REDACTED}", "--user", f"alice:{REDACTED}", "--key", "/etc/ssl/k.pem",
        "--max-tokens", "512", "-u", "1000:1000"]


def test_environment_by_name_and_by_value():
    env = {**ENV_SECRETS, **ENV_SHAPED, "KMP_DUPLICATE_LIB_OK": "TRUE",
           "OMP_NUM_THREADS": "4", "PASSWORD_FILE": "/run/secrets/db_password",
           "EMPTY_TOKEN": ""}
    masked = redact_environment(env)
    assert all(masked[name] == REDACTED for name in ENV_SECRETS)
    assert masked["XLA_FLAGS"] == f"--xla_dump_to=/tmp/xla --xla_auth={REDACTED}"
    assert masked["TORCH_HOME"] == f"https://alice:{REDACTED}@cache.example.invalid/torch"
    assert masked["KMP_DUPLICATE_LIB_OK"] == "TRUE" and masked["OMP_NUM_THREADS"] == "4"
    assert masked["PASSWORD_FILE"] == "/run/secrets/db_password"
    assert masked["EMPTY_TOKEN"] == ""  # an empty value says "set but empty": nothing to hide


def test_a_report_tree():
    data = {"outcome": {"command": ["python", "x.py", "--password", "hunter2horse"],
                        "sections": [{"title": "stderr", "text": PLANTED}],
                        "stacks": [{"file": "/srv/secret_cmd.py", "line": 3,
                                    "function": "get_keys"}]},
            "snapshot": {"environment": dict(ENV_SECRETS),
                         "distributions": {"google-auth": "2.38.0", "keyring": "25.0"}},
            "build": GIT_HASH}
    masked = redact_tree(data)
    assert masked["outcome"]["command"][-1] == REDACTED
    assert leaks(repr(masked)) == []
    assert masked["outcome"]["stacks"] == data["outcome"]["stacks"]
    assert masked["snapshot"]["distributions"] == data["snapshot"]["distributions"]
    assert masked["build"] == GIT_HASH
    assert redact_tree(masked) == masked


def test_an_aws_secret_key_alone_or_a_git_hash_next_to_a_key_id_stays():
    assert redact_text(AWS_SECRET) == AWS_SECRET  # 40 characters, nothing says what it is
    assert redact_text(f"{AWS_ID} {GIT_HASH}") == f"{REDACTED} {GIT_HASH}"


def test_a_private_key_block_cut_short():
    text = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nq8Hr3s0x/9+\n"
    assert redact_text(text) == f"key:\n{REDACTED}\n"
    encrypted = ("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
                 "DEK-Info: AES-128-CBC,3F17\n\nMIIEowIBAAKCAQEA7\n")
    assert redact_text(encrypted) == f"{REDACTED}\n"


def test_values_cut_short_by_a_line_limit():
    assert redact_text("postgres://alice:s3cr3tUr...") == "postgres://alice:[REDACTED]..."
    assert redact_text("x --password hunt...") == "x --password [REDACTED]"
    assert redact_text('{"password": "hunter2...') == '{"password": [REDACTED]'
    assert redact_text("https://example.com:8080/x...") == "https://example.com:8080/x..."


def test_tokens_are_words_not_parts_of_words():
    for text in ("/opt/mask-abcdefghijklmnopqrstuvwxyz0123",
                 "shelf_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "task-0123456789abcdefghijklmnop",
                 "sk-learn", "hf_hub_download..."):
        assert redact_text(text) == text


def test_html_markup_around_a_value_survives():
    assert redact_text("<td>--password hunter2</td>") == "<td>--password [REDACTED]</td>"
    assert redact_text("<li>Authorization: Bearer abcdefghijklmnopqrst</li>") == \
        "<li>Authorization: [REDACTED]</li>"


def test_every_secret_of_the_corpus_is_found_alone_in_its_context():
    for line in [*PLANTED.replace(PEM, "").splitlines(), PEM]:
        assert leaks(redact_text(line), [s for s in SECRETS if s in line]) == [], line


def test_benign_items_alone():
    for item in BENIGN:
        assert redact_text(item) == item


# -- python -m numdoctor.redact ------------------------------------------------------------------

def _module(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numdoctor.redact", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_the_module_masks_standard_input():
    result = _module(stdin=PLANTED + "\n" + BENIGN_TEXT + "\n")
    assert result.returncode == 0
    assert leaks(result.stdout) == []
    assert BENIGN_TEXT in result.stdout


def test_the_module_checks_a_file(tmp_path):
    clean, dirty = tmp_path / "clean.md", tmp_path / "dirty.log"
    clean.write_text(BENIGN_TEXT + "\n")
    dirty.write_text(f"line one\nexport HF_TOKEN={HUGGING_FACE}\nline three\n")
    assert _module("--check", str(clean)).returncode == 0
    result = _module("--check", str(clean), str(dirty))
    assert result.returncode == 1
    assert result.stdout == f"{dirty}:2: export HF_TOKEN={REDACTED}\n"
    missing = _module("--check", str(tmp_path / "nope.md"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_a_long_traceback_is_masked_before_it_is_cut():
    """`text[-4000:]` could start inside a token and leave its tail, prefix gone."""
    from numdoctor.redact import clip_tail

    traceback = "Traceback (most recent call last):\n" + "  x\n" * 10 + \
        f"ValueError: bad token {HUGGING_FACE} for secret_cmd.py:3\n"
    cut = len(traceback) - traceback.index(HUGGING_FACE) - 5  # five characters into it
    clipped = clip_tail(traceback, cut)
    assert HUGGING_FACE[5:] not in clipped and len(clipped) <= cut
    assert clipped.endswith("for secret_cmd.py:3\n")
    assert clip_tail("short", 4000) == "short"


def test_every_secret_name_reaches_the_scan():
    """The scan looks only where a trigger word is: each secret word must contain one, and
    the factored regex must find each trigger word."""
    from numdoctor.redact import names, text

    words = [*names._SECRET, *names._SECRET_ENDINGS, *names._QUALIFIED, *names._QUERY_SECRET]
    for word in words:
        assert any(trigger in word for trigger in text._TRIGGER_WORDS), word
    for trigger in text._TRIGGER_WORDS:
        assert text._NAMED_HINT.match(f"{trigger}=x"), trigger
        assert text._MAYBE.search(trigger), trigger
