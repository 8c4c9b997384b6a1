"""Properties of the redaction step, on text hypothesis makes up."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from numdoctor.redact import REDACTED, redact_text, redact_tree
from numdoctor.redact.names import is_secret_name

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# -- benign text: what stacks, paths and build logs are made of -------------------------------
# Words include the secret words as *parts* of names, which is what must not trigger.
_WORDS = st.sampled_from([
    "secret", "token", "tokens", "key", "keys", "pass", "password", "auth", "cred", "cookie",
    "tokenizer", "keyring", "cmd", "get", "set", "load", "model", "numpy", "torch", "linalg",
    "forward", "call", "impl", "wait", "lock", "kmp", "duplicate", "lib", "ok", "main",
    "sk", "hf", "gh", "glpat", "x", "api", "max", "eos", "sort",
])
_IDENTIFIER = st.lists(_WORDS, min_size=1, max_size=4).map("_".join)
_ENV_NAME = _IDENTIFIER.map(str.upper)
_HEX = st.sampled_from([40, 64]).flatmap(
    lambda n: st.text("0123456789abcdef", min_size=n, max_size=n))
_UUID = st.uuids().map(str)
# Joined by dashes, `sk` or `glpat` and 20 more characters would be a real token's shape.
_DASHED = st.lists(_WORDS.filter(lambda w: w not in ("sk", "glpat")), min_size=1,
                   max_size=4).map("-".join)
_PATH = st.lists(st.one_of(_IDENTIFIER, _DASHED), min_size=1, max_size=8).map(
    lambda parts: "/" + "/".join(parts))
_FILE = _IDENTIFIER.map(lambda name: name + ".py")
_LOCATION = st.tuples(st.one_of(_FILE, _PATH.map(lambda p: p + ".py")),
                      st.integers(1, 99999)).map(lambda t: f"{t[0]}:{t[1]}")
_FRAME = st.tuples(_PATH, st.integers(1, 9999), _IDENTIFIER).map(
    lambda t: f'File "{t[0]}.py", line {t[1]}, in {t[2]}')
_NATIVE = st.tuples(_IDENTIFIER, _IDENTIFIER).map(lambda t: f"{t[0]} in lib{t[1]}.so")
_DIGEST = st.one_of(_HEX, _HEX.map(lambda h: f"sha256:{h}"),
                    _HEX.map(lambda h: f"--hash=sha256:{h}"),
                    _HEX.map(lambda h: f"BuildID[sha1]={h[:40]}"))
_VERSION = st.lists(st.integers(0, 99), min_size=2, max_size=4).map(
    lambda v: ".".join(map(str, v)))
_BENIGN_ENV = st.tuples(_ENV_NAME, st.one_of(st.sampled_from(["TRUE", "false", "1", "4"]),
                                             _PATH)).filter(
    lambda t: not is_secret_name(t[0])).map(lambda t: f"{t[0]}={t[1]}")
_BENIGN_PIECE = st.one_of(_IDENTIFIER, _PATH, _FILE, _LOCATION, _FRAME, _NATIVE, _DIGEST,
                          _UUID, _VERSION, _BENIGN_ENV)
_SEPARATOR = st.sampled_from([" ", "\n", ", ", " (", ") ", "\t", " in ", " at ", "; "])


@st.composite
def benign_text(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(_BENIGN_PIECE, min_size=1, max_size=12))
    out = pieces[0]
    for piece in pieces[1:]:
        out += draw(_SEPARATOR) + piece
    return out


# -- planted secrets -------------------------------------------------------------------------------
_ALNUM = string.ascii_letters + string.digits
_PASSWORD = st.text(_ALNUM + "!#$%^*+~@.-_/?", min_size=8, max_size=24).filter(
    lambda p: not p.startswith("-") and p[0] not in "/~")


def _shape(prefix: str, alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=size).map(lambda body: prefix + body)


_TOKEN = st.one_of(
    _shape("sk-proj-", _ALNUM, 40), _shape("sk-ant-api03-", _ALNUM + "_-", 40),
    _shape("ghp_", _ALNUM, 36), _shape("github_pat_", _ALNUM + "_", 60),
    _shape("glpat-", _ALNUM, 20), _shape("hf_", _ALNUM, 34),
    _shape("AKIA", string.ascii_uppercase + string.digits, 16),
    _shape("AIza", _ALNUM + "_-", 35), _shape("xoxb-", string.digits + "-" + _ALNUM, 40),
    _shape("sk_live_", _ALNUM, 24), _shape("npm_", _ALNUM, 36),
    st.tuples(_shape("eyJ", _ALNUM, 20), _shape("eyJ", _ALNUM, 30),
              st.text(_ALNUM + "_-", min_size=20, max_size=40)).map(".".join),
)
_SECRET_FLAG = st.sampled_from(["--password", "--db-password", "--api-key", "--token",
                                "--hf-token", "--client-secret", "--key", "--passphrase",
                                "--access-token", "--secret"])
_SECRET_NAME = st.sampled_from(["PASSWORD", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "api_key",
                                "password", "DB_PASS", "client_secret", "access_token"])


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, str]:
    """(text with a secret in a context that makes it one, the secret)."""
    kind = draw(st.sampled_from(["token", "flag", "flag=", "argv", "name=", "json", "url",
                                 "header", "quoted-name="]))
    if kind == "token":
        secret = draw(_TOKEN)
        return secret, secret
    secret = draw(_PASSWORD)
    flag, name = draw(_SECRET_FLAG), draw(_SECRET_NAME)
    text = {
        "flag": f"{flag} {secret}",
        "flag=": f"{flag}={secret}",
        "argv": f"['prog.py', '{flag}', '{secret}']",
        "name=": f"{name}={secret}",
        "json": f'{{"{name}": "{secret}"}}',
        "url": f"https://alice:{secret.replace('/', '_')}@example.com/x",
        "header": f"Authorization: Bearer {secret}",
        "quoted-name=": f"'{name}={secret}'",
    }[kind]
    if kind == "url":
        secret = secret.replace("/", "_")  # unencoded, it would end the host
    return text, secret


# -- the properties -------------------------------------------------------------------------------

@SETTINGS
@given(st.text())
@example("--password --token x")
@example("İ--password x")
def test_never_raises_and_is_idempotent_on_any_unicode(text):
    once = redact_text(text)
    assert redact_text(once) == once


# Text made of the pieces the rules look at: separators, secret words, prefixes, masks.
_DENSE = st.lists(st.sampled_from([
    *"ab=:-' \"\n,()[]{}/@?&;", "password", "--password", "token", "KEY", "sk-", "ghp_", "hf_",
    "://", "Bearer ", REDACTED, "-u ", "0x1f ", "\\", "..."]), max_size=40).map("".join)


@SETTINGS
@given(_DENSE)
def test_idempotent_on_text_dense_in_separators_and_secret_words(text):
    once = redact_text(text)
    assert redact_text(once) == once


@SETTINGS
@given(_DENSE)
def test_each_mask_replaces_at_least_one_character(text):
    out = redact_text(text)
    added = out.count(REDACTED) - text.count(REDACTED)
    assert len(out) <= len(text) + max(added, 0) * (len(REDACTED) - 1)


@SETTINGS
@given(benign_text())
@example("called from wait_forever (secret_cmd.py:3) KMP_DUPLICATE_LIB_OK=TRUE")
def test_benign_text_is_unchanged(text):
    assert redact_text(text) == text


@SETTINGS
@given(st.text(), planted(), st.text(), st.sampled_from([" ", "\n", "\t", " ; "]))
def test_a_planted_secret_is_removed_whatever_surrounds_it(before, plant, after, separator):
    text, secret = plant
    # (The text around may not hold the secret, nor the part of it checked below.)
    assume(secret[:-1] not in before and secret[:-1] not in after)
    out = redact_text(before + separator + text + separator + after)
    assert secret not in out
    # At most one trailing character (a closing bracket or comma taken for punctuation)
    # is given back to the text around the value.
    assert secret[:-1] not in out


@SETTINGS
@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(), benign_text()),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), _SECRET_NAME, _ENV_NAME), children,
                        max_size=5)),
    max_leaves=30))
def test_trees_never_raise_and_mask_to_themselves(tree):
    once = redact_tree(tree)
    assert redact_tree(once) == once


@SETTINGS
@given(st.text())
def test_names_never_raise(name):
    assert is_secret_name(name) in (True, False)
