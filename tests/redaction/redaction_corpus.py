"""Planted secrets and benign look-alikes, shared by the redaction tests.

Every secret below is fake but has the exact shape its provider documents; each is built by
concatenation so that no secret scanner mistakes this file for a leak. `SECRETS` are the
strings that must never appear in any output; `PLANTED` puts them in every context a report
can carry them (an argv, a URL, a header, JSON, a gdb frame, a traceback message...);
`BENIGN` are strings that look a little like secrets and must survive untouched.
"""

from __future__ import annotations

import re

# -- provider token shapes ---------------------------------------------------------------------
OPENAI = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6h"
ANTHROPIC = "sk-" + "ant-api03-" + "Qw3rTy6uIo9pAs2dFg5hJk8lZx1cVb4nM7qW0eRt"
GITHUB = "ghp" + "_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GITHUB_OAUTH = "gho" + "_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
GITHUB_PAT = ("github" + "_pat_" + "11AAAAAAA0abcdefghijkl_"
              "MnOpQrStUvWxYz0123456789abcdefGHIJKLmnopqr")
GITLAB = "glpat" + "-" + "xY7zK2mQ9vR4tW1bN8cJ"
HUGGING_FACE = "hf" + "_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"
AWS_ID = "AKIA" + "QWERTYUIOP123456"
AWS_SECRET = "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCYzEXAMPLEKE"
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
SLACK = "xoxb" + "-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_" + "live_" + "51HqLyjWDarjtT1zdp7dcXYZ"
JWT = ("eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJ" + "zdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6"
       "IkpvaG4ifQ" + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
BEARER_TOKEN = "qQ8vT3" + "xZ7pLm2WnR5kYs9JdF4h"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0" + "BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
PEM = ("-----BEGIN " + "PRIVATE KEY-----\n" + PEM_BODY + "\nMwIDAQABAoIBAFsUmA==\n"
       "-----END " + "PRIVATE KEY-----")

# -- secrets known only by where they stand ----------------------------------------------------
ARG_PASSWORD = "hunter2horse"             # --password hunter2horse
ARG_EQUALS_PASSWORD = "Tr0ub4dor-3x"      # --db-password=Tr0ub4dor-3x
ARG_SECRET = "sEcretArgValue9"           # --client-secret sEcretArgValue9
URL_PASSWORD = "s3cr3tUrlPass"           # postgres://alice:s3cr3tUrlPass@db.example.com
QUERY_TOKEN = "QueryTok3nValue"           # ?access_token=QueryTok3nValue&page=2
CURL_PASSWORD = "curlPassw0rd"           # curl -u alice:curlPassw0rd
JSON_PASSWORD = "jsonPassw0rdValue"       # {"password": "jsonPassw0rdValue"}
GDB_PASSWORD = "gdbArgPassw0rd"          # connect (password=0x5555 "gdbArgPassw0rd")
HEADER_KEY = "headerApiKeyValue"          # X-Api-Key: headerApiKeyValue
ASSIGNED = "assignedSecretValue"          # DB_PASSWORD=assignedSecretValue

# Environment variables the numerical stack's snapshot shows (their prefixes are picked),
# named like secrets, with values that look like nothing in particular.
ENV_SECRETS = {
    "TF_PASSWORD": "envPassw0rdValue",
    "CUDA_API_KEY": "envCudaKeyValue77",
    "TORCH_HUB_TOKEN": "envTorchTokenValue",
    "NCCL_SECRET": "envNcclSecretValue",
    "OMP_SECRET_TOKEN": "envOmpTokenValue",
    "MKL_DB_PASS": "envMklPassValue",
}
# Token shapes hidden in variables with innocent names.
ENV_SHAPED = {
    "XLA_FLAGS": f"--xla_dump_to=/tmp/xla --xla_auth={HUGGING_FACE}",
    "TORCH_HOME": f"https://alice:{URL_PASSWORD}@cache.example.invalid/torch",
    "CUDA_CACHE_PATH": f"/opt/{GITHUB}/cache",
}

SECRETS = [
    OPENAI, ANTHROPIC, GITHUB, GITHUB_OAUTH, GITHUB_PAT, GITLAB, HUGGING_FACE, AWS_ID,
    AWS_SECRET, GOOGLE, SLACK, STRIPE, JWT, BEARER_TOKEN, PEM_BODY, ARG_PASSWORD,
    ARG_EQUALS_PASSWORD, ARG_SECRET, URL_PASSWORD, QUERY_TOKEN, CURL_PASSWORD, JSON_PASSWORD,
    GDB_PASSWORD, HEADER_KEY, ASSIGNED, *ENV_SECRETS.values(),
]

# The program's own command line: a secret as the argument after a flag, after `=`, and
# a token-shaped value.
ARGV = ["--password", ARG_PASSWORD, f"--db-password={ARG_EQUALS_PASSWORD}",
        "--client-secret", ARG_SECRET, "--api-key", OPENAI, "--batch-size", "32",
        f"postgres://alice:{URL_PASSWORD}@db.example.com:5432/prod"]

# What a program prints: every secret, each in a context that makes it one.
PLANTED = "\n".join([
    "connecting with " + " ".join(ARGV),
    f"GET https://api.example.com/v1/models?access_token={QUERY_TOKEN}&page=2",
    f"Authorization: Bearer {BEARER_TOKEN}",
    f"curl -u alice:{CURL_PASSWORD} https://example.com",
    f'config: {{"user": "alice", "password": "{JSON_PASSWORD}", "epochs": 3}}',
    f'#3 0x00007f in connect (host=0x5555 "db", password=0x5556 "{GDB_PASSWORD}") at db.c:42',
    f"X-Api-Key: {HEADER_KEY}",
    f"DB_PASSWORD={ASSIGNED} MAX_TOKENS=512",
    f"aws {AWS_ID} {AWS_SECRET}",
    f"tokens: {ANTHROPIC} {GITHUB} {GITHUB_OAUTH} {GITHUB_PAT} {GITLAB} {HUGGING_FACE}",
    f"more: {GOOGLE} {SLACK} {STRIPE} {JWT}",
    PEM,
    *(f"{name}={value}" for name, value in ENV_SECRETS.items()),
])

# -- look-alikes that must survive ---------------------------------------------------------------
WHEEL_SHA256 = "3f786850e387550fdab836ed7e6dc881de23001b3f786850e387550fdab836ed"
GIT_HASH = "9fceb02d0ae598e95dc970b74767f19372d61af8"
BUILD_ID = "BuildID[sha1]=1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
UUID = "123e4567-e89b-12d3-a456-426614174000"
LONG_PATH = ("/home/alice/miniforge3/envs/tokenizer-secret-keys/lib/python3.11/site-packages/"
             "transformers/models/auto/tokenization_auto.py")
BENIGN = [
    "secret_cmd.py:3", "tokenizer.py", "tokenizer_keys.py:12", "get_keys",
    "KMP_DUPLICATE_LIB_OK=TRUE", "TOKENIZERS_PARALLELISM=false", "MAX_TOKENS=512",
    "PYTORCH_KEYS_X=1", "eos_token_id=2", "--max-tokens 512", "--sort-key name",
    f"sha256={WHEEL_SHA256}", f"--hash=sha256:{WHEEL_SHA256}", GIT_HASH, BUILD_ID, UUID,
    LONG_PATH, "git@github.com:numdoctor/numdoctor.git", "sorted(rows, key=len)",
    "PASSWORD_FILE=/run/secrets/db_password", "python -u train.py",
    "docker run -u 1000:1000", "SSH_AUTH_SOCK=/tmp/ssh-XXXX/agent.42",
    "https://huggingface.co/bert-base-uncased/resolve/main/tokenizer.json",
]
# Six to a line: a report keeps only the last lines of a program's stderr.
BENIGN_TEXT = "\n".join("benign: " + " ; ".join(BENIGN[i:i + 6]) for i in range(0, len(BENIGN), 6))


def squeezed(text: str) -> str:
    """Without whitespace: a renderer that wraps a long line must not hide a leak."""
    return re.sub(r"\s+", "", text)


def leaks(output: str, secrets: list[str] | None = None) -> list[str]:
    """The planted secrets found in `output` (wrapped across lines or not)."""
    flat = squeezed(output)
    return [s for s in (SECRETS if secrets is None else secrets) if squeezed(s) in flat]


def lost(output: str, items: list[str] | None = None) -> list[str]:
    """The benign look-alikes missing from `output`."""
    flat = squeezed(output)
    return [b for b in (BENIGN if items is None else items) if squeezed(b) not in flat]
