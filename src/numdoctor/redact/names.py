"""Which names hold secrets: environment variables, flags, keyword arguments, JSON keys.

A name is split into words (`AWS_SECRET_ACCESS_KEY` -> aws secret access key, `apiKey` -> api
key, `db.password` -> db password) and judged by its *last* word, the noun that says what the
value is: `HF_TOKEN` holds a token, `TOKEN_FILE` a file name, `MAX_TOKENS` a count,
`secret_cmd.py` a Python file, `TOKENIZERS_PARALLELISM` a switch. A word merely containing
"key" or "token" (`KEYS`, `tokenizer`, `keyring`) never counts.
"""

from __future__ import annotations

import functools
import re
from enum import Enum

_WORD = re.compile(r"[A-Z]+[0-9]*(?![a-z])|[A-Z]?[a-z]+[0-9]*|[0-9]+")

# Last words that name a secret on their own.
_SECRET = frozenset({
    "password", "passwd", "passphrase", "passcode", "secret", "token", "apikey",
    "credential", "credentials", "creds", "cookie", "dsn", "sas", "authorization",
    "privatekey", "secretkey", "accesskey", "sessionkey", "authkey", "authtoken",
    "passin", "passout",  # openssl -passin pass:...
})
# One word ending like this is a secret too: PGPASSWORD, hftoken, clientsecret, myapikey.
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "token", "apikey")
# Secrets only behind a qualifier: MYSQL_PWD and DB_PASS are passwords, but PWD alone is the
# working directory; `--key` and `--pass` on a command line are secrets, a bare `key` or
# `pass` in code or prose is not.
_QUALIFIED = frozenset({"pwd", "pass", "key"})
# Words after the noun that do not change what the value is: PASSWORD_B64, TOKEN_VALUE.
_FILLER = frozenset({"value", "val", "b64", "base64", "hex", "raw", "plain", "plaintext",
                     "encoded", "enc"})
# A qualifier in front of these makes the name something other than a secret: a count
# (`max_tokens`), a language model's special token (`eos_token`), a yes/no switch
# (`is_secret`, `no_password`, `ask_password`).
_NOT_A_SECRET_AFTER = frozenset({
    "max", "min", "num", "n", "count", "total", "limit", "per", "first", "last", "next",
    "prev", "new", "eos", "bos", "pad", "unk", "sep", "cls", "mask", "special", "start", "end",
    "stop", "sentinel", "image", "audio", "video", "added", "vocab", "is", "has", "no", "use",
    "with", "without", "ask", "prompt", "require", "requires", "show", "hide", "skip",
    "enable", "disable", "allow", "want",
})
# `*_key` in code names a dictionary or random key unless qualified like a credential.
_CREDENTIAL_KEY = frozenset({
    "api", "access", "secret", "private", "encryption", "encrypt", "signing", "sign", "auth",
    "master", "account", "client", "license", "licence", "service", "app", "application",
    "subscription", "storage", "shared", "ssh", "gpg", "pgp", "hmac", "session", "deploy",
    "consumer", "crypt", "crypto", "cipher", "aes", "rsa", "jwt", "webhook", "admin",
    "developer", "dev", "user", "server", "host", "tls", "ssl", "write", "read",
})
# `*_KEY` in an environment variable or a flag is a credential unless it is a kind of key
# that is not one.
_ORDINARY_KEY = frozenset({
    "sort", "partition", "primary", "foreign", "cache", "shard", "map", "dict", "lookup",
    "group", "hot", "index", "public", "pub", "row", "column", "col", "hash", "unique",
    "composite", "routing", "prng", "rng", "random", "seed", "dropout", "init", "sample",
    "split", "sub", "batch", "join", "order", "table", "field", "attr", "item", "state",
    "module", "param", "params", "layer", "dataset", "data", "config", "cfg", "name",
    "label", "class", "metric", "target", "input", "output", "tensor", "node", "type",
    "default", "prefix", "suffix", "parent", "child", "cmp", "compare", "dedup", "lock",
    "run", "job", "task", "step", "cluster", "bucket", "object", "blob", "file", "path",
})
# Query parameters of URLs that carry credentials under short names (cloud signed URLs).
_QUERY_SECRET = frozenset({"sig", "signature", "key", "auth", "pass", "pwd",
                           "x-amz-signature", "x-goog-signature", "x-amz-credential",
                           "x-goog-credential"})
# Flags whose value is `user:password` (curl -u, httpie --auth, wget/curl --proxy-user).
_USERINFO_FLAGS = frozenset({"u", "user", "auth", "proxy-user", "basic-auth", "U"})


class Kind(Enum):
    """Where a name stands, which decides how much a qualifier must say."""

    CODE = "code"    # keyword arguments, locals, JSON keys, YAML keys: `sort_key` is no secret
    ENV = "env"      # UPPER_CASE variables: `OPENAI_KEY` is one
    FLAG = "flag"    # command-line options: `--key`, `--wandb-key` are
    QUERY = "query"  # URL query parameters: `?sig=`, `?key=` are


def words(name: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(name)]


def kind_of(name: str) -> Kind:
    """FLAG for `-x`/`--name`, ENV for names without lower-case letters, else CODE."""
    if name.startswith("-"):
        return Kind.FLAG
    return Kind.CODE if any(c.islower() for c in name) else Kind.ENV


@functools.lru_cache(maxsize=4096)  # a report repeats its keys and flags thousands of times
def is_secret_name(name: str, kind: Kind | None = None) -> bool:
    """Does a value under this name hold a secret? (`kind` guessed from the name if None.)"""
    kind = kind_of(name) if kind is None else kind
    bare = name.lstrip("-").rsplit(".", 1)[-1]  # db.password -> password; foo.py -> py
    if kind is Kind.QUERY and bare.lower() in _QUERY_SECRET:
        return True
    parts = words(bare)
    while parts and (parts[-1].isdigit() or parts[-1] in _FILLER):
        parts.pop()
    if not parts:
        return False
    head = parts[-1].rstrip("0123456789")  # PASSWORD2
    before = parts[-2].rstrip("0123456789") if len(parts) > 1 else None
    if before in _NOT_A_SECRET_AFTER:
        return False
    if head in _SECRET or head.endswith(_SECRET_ENDINGS):
        return True
    if head in ("string", "str") and before in ("conn", "connection"):
        return True  # AZURE_STORAGE_CONNECTION_STRING holds an account key
    if head not in _QUALIFIED:
        return False
    if before is None:
        return kind is Kind.FLAG and head != "pwd"
    if head != "key":
        return True
    if kind is Kind.CODE:
        return before in _CREDENTIAL_KEY
    return before not in _ORDINARY_KEY


def is_userinfo_flag(name: str) -> bool:
    """`-u`, `--user`, `--auth`: their value may be `user:password`."""
    return name.startswith("-") and name.lstrip("-") in _USERINFO_FLAGS
