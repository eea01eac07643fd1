"""Passwords never show: not in repr, str, f-strings, log records or ``streams settings``.

Every way a settings object or a secret is commonly turned into text is tried with a known
password, and the password must appear in none of them; only ``reveal()`` hands it out (the
ClickHouse client gets the revealed value: test_migrations_chdb.py checks it).
"""

from __future__ import annotations

import copy
import io
import logging
import pickle

import pytest

from streams import cli
from streams.settings import Secret, load_settings

WRITER_PASSWORD = "w-Pa55word-never-shown"
ADMIN_PASSWORD = "a-Pa55word-never-shown"
ENVIRON = {"STREAMS_CLICKHOUSE_PASSWORD": WRITER_PASSWORD, "STREAMS_CLICKHOUSE_ADMIN_PASSWORD": ADMIN_PASSWORD}


def assert_hidden(text: str) -> None:
    assert WRITER_PASSWORD not in text and ADMIN_PASSWORD not in text, text


def test_a_secret_shows_only_its_mask() -> None:
    secret = Secret(WRITER_PASSWORD)
    percent = ("%s" % secret, "%r" % (secret,))  # noqa: UP031 - the logging module formats this way
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}", format(secret, ""),
                 *percent, repr([secret]), repr({"password": secret})):
        assert_hidden(text)
    assert str(secret) == "***" and repr(secret) == "Secret('***')"
    assert secret.reveal() == WRITER_PASSWORD


def test_secrets_compare_by_value_and_survive_copies() -> None:
    secret = Secret(WRITER_PASSWORD)
    assert secret == Secret(WRITER_PASSWORD) and secret != Secret(ADMIN_PASSWORD)
    assert secret != WRITER_PASSWORD  # not a str: it cannot be mistaken for one
    assert len({secret, Secret(WRITER_PASSWORD)}) == 1
    assert bool(secret) and not Secret("")
    for copied in (copy.copy(secret), copy.deepcopy(secret), pickle.loads(pickle.dumps(secret))):
        assert copied == secret and copied.reveal() == WRITER_PASSWORD
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_settings_as_text_never_show_a_password() -> None:
    settings = load_settings(ENVIRON)
    assert settings.clickhouse_password.reveal() == WRITER_PASSWORD
    assert settings.clickhouse_admin_password.reveal() == ADMIN_PASSWORD
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}", f"{settings.clickhouse_password}",
                 f"{settings.clickhouse_admin_password}", "%s" % (settings,)):  # noqa: UP031
        assert_hidden(text)
    assert "clickhouse_password=Secret('***')" in repr(settings)


def test_logging_settings_and_secrets_shows_no_password() -> None:
    settings = load_settings(ENVIRON)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("streams.test_secrets")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.info("settings %s", settings)
        log.info("settings %r", settings)
        log.warning("password %s, admin %r", settings.clickhouse_password, settings.clickhouse_admin_password)
        log.info("as an argument dict: %(password)s", {"password": settings.clickhouse_password})
        try:
            raise RuntimeError(f"connecting with {settings}")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert output.count("***") >= 6
    assert_hidden(output)


def test_streams_settings_lists_values_with_secrets_masked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {**ENVIRON, "STREAMS_CLICKHOUSE_USER": "etl"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["settings"]) == 0
    captured = capsys.readouterr()
    assert_hidden(captured.out + captured.err)
    lines = {line.split()[0]: line for line in captured.out.splitlines()}
    assert "'etl'" in lines["STREAMS_CLICKHOUSE_USER"] and "(default 'writer')" in lines["STREAMS_CLICKHOUSE_USER"]
    assert lines["STREAMS_CLICKHOUSE_PASSWORD"].split()[1] == "***"
    assert lines["STREAMS_CLICKHOUSE_ADMIN_PASSWORD"].split()[1] == "***"

