"""The command line's log levels: client libraries quiet unless -v, the worker's untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streams.cli import LIBRARY_LOGGERS, build_parser, configure_logging


@pytest.fixture(autouse=True)
def _restore_levels() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in ("", *LIBRARY_LOGGERS, "kafka.net.selector")}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def effective(name: str) -> int:
    return logging.getLogger(name).getEffectiveLevel()


def test_commands_show_only_warnings_of_the_client_libraries() -> None:
    configure_logging("demo", verbose=False)
    assert all(effective(f"{name}.child") == logging.WARNING for name in LIBRARY_LOGGERS)
    assert effective("streams.tools.demo") == logging.INFO
    assert effective("kafka.net.selector") == logging.ERROR  # its slow-loop warnings too


def test_verbose_and_the_worker_show_the_libraries_info_lines() -> None:
    configure_logging("demo", verbose=True)
    assert effective("aiokafka.consumer") == logging.INFO
    configure_logging("worker", verbose=False)
    assert all(effective(name) == logging.INFO for name in (*LIBRARY_LOGGERS, "kafka.net.selector"))


def test_verbose_is_a_flag_of_the_streams_command() -> None:
    args = build_parser().parse_args(["-v", "report", "--out", "page.html"])
    assert args.verbose and args.command == "report" and args.out == "page.html"
    assert not build_parser().parse_args(["report"]).verbose
