"""A password never shows in what a failed ClickHouse login produces: the driver's exception
(str and repr), the sink's description of it, a logged traceback, SQLAlchemy's URL and error,
and the ``streams migrate`` command's output. Against the real local ClickHouse 18.16.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import traceback
from collections.abc import Callable

import pytest
from clickhouse_driver.errors import Error as DriverError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from streams import cli
from streams.clickhouse.client import connect
from streams.clickhouse.errors import describe
from streams.settings import PREFIX, Secret, Settings
from tests.conftest import unique

WRONG_PASSWORD = "wrong-Pa55word-never-shown"


def closed_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on: bind, read it, close
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


FAILURES: dict[str, Callable[[Settings], Settings]] = {
    "wrong password": lambda s: dataclasses.replace(s, clickhouse_password=Secret(WRONG_PASSWORD)),
    "nothing listening": lambda s: dataclasses.replace(s, clickhouse_port=closed_port(),
                                                       clickhouse_password=Secret(WRONG_PASSWORD)),
}


def logged_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("failure", FAILURES)
def test_driver_errors_carry_no_password(base_settings: Settings, failure: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    settings = FAILURES[failure](base_settings)
    client = connect(settings)
    with pytest.raises(DriverError) as caught:
        client.execute("SELECT 1")
    error = caught.value
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("streams.test").exception("ClickHouse login failed with %s", settings)
    for text_ in (str(error), repr(error), describe(error), logged_traceback(error), caplog.text):
        assert WRONG_PASSWORD not in text_, text_
    assert ("Wrong password" if failure == "wrong password" else "Connection refused") in str(error)


def test_sqlalchemy_url_and_error_carry_no_password(base_settings: Settings) -> None:
    url = URL.create("clickhouse+native", username="analyst", password=WRONG_PASSWORD,
                     host=base_settings.clickhouse_host, port=base_settings.clickhouse_port, database="default")
    engine = create_engine(url)
    with pytest.raises(Exception, match="Wrong password") as caught, engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    for text_ in (str(url), repr(url), repr(engine), str(caught.value), logged_traceback(caught.value)):
        assert WRONG_PASSWORD not in text_, text_
    engine.dispose()


def test_streams_migrate_with_a_wrong_password_prints_no_password(
        base_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(PREFIX + "CLICKHOUSE_HOST", base_settings.clickhouse_host)
    monkeypatch.setenv(PREFIX + "CLICKHOUSE_PORT", str(base_settings.clickhouse_port))
    monkeypatch.setenv(PREFIX + "CLICKHOUSE_DATABASE", unique("t"))
    monkeypatch.setenv(PREFIX + "CLICKHOUSE_ADMIN_PASSWORD", WRONG_PASSWORD)
    with caplog.at_level(logging.DEBUG):
        try:
            code = cli.main(["migrate"])
            escaped = ""
        except Exception as error:  # whatever escapes is printed by the interpreter: check it too
            code, escaped = 1, logged_traceback(error)
    captured = capsys.readouterr()
    output = captured.out + captured.err + caplog.text + escaped
    assert code != 0
    assert "Wrong password" in output
    assert WRONG_PASSWORD not in output
