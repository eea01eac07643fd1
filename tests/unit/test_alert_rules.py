"""The alert and recording rules (deploy/prometheus/rules/streams.yml): promtool accepts them,
their promtool unit tests pass (each alert fires on the series it is about and stays quiet on
healthy ones: tests/unit/alert_rules_test.yml), and every alert carries what an operator needs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.observability import (
    OPERATIONS_DOC,
    RULES_DIR,
    alert_rules,
    exported_metrics,
    referenced_metrics,
    rules,
)

PROMTOOL = shutil.which("promtool")
PROMTOOL_TESTS = Path(__file__).with_name("alert_rules_test.yml")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (deploy/local/stack install)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    assert files, "no rule files"
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(PROMTOOL_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_case_in_the_promtool_tests() -> None:
    cases = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    fired = {check["alertname"] for case in cases for check in case.get("alert_rule_test", [])
             if check.get("exp_alerts")}
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_promtool_tests_are_not_loaded_as_rules() -> None:
    """Prometheus loads rules/*.yml: a test file there would break its config reload."""
    assert not PROMTOOL_TESTS.is_relative_to(RULES_DIR)


def operations_anchors() -> set[str]:
    """GitHub-style anchors of the headings of docs/operations.md."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS_DOC.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_says_how_bad_what_and_where_to_read_on(rule: dict[str, object]) -> None:
    labels = rule.get("labels")
    annotations = rule.get("annotations")
    assert isinstance(labels, dict) and isinstance(annotations, dict)
    assert labels.get("severity") in {"critical", "warning"}
    assert annotations.get("summary") and annotations.get("description")
    runbook = str(annotations.get("runbook", ""))
    path, _, anchor = runbook.partition("#")
    assert path == "docs/operations.md"
    assert anchor == str(rule["alert"]).lower(), "one runbook section per alert, named after it"
    assert anchor in operations_anchors(), f"docs/operations.md has no section #{anchor}"


def test_rules_read_only_metrics_the_worker_exports() -> None:
    exported = set().union(*exported_metrics().values()) | {"up"}
    for rule in rules():
        unknown = referenced_metrics(rule["expr"]) - exported
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads {sorted(unknown)}"


def test_recording_rules_follow_the_naming_convention() -> None:
    """level:metric:operations (Prometheus' convention), so they never clash with raw metrics."""
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"streams:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_recorded_series_are_recorded_before_use_in_the_same_group() -> None:
    """Groups are evaluated independently: an alert reading another group's recording may see
    the previous evaluation's value. Within a group rules run in order."""
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            recorded: set[str] = set()
            for rule in group["rules"]:
                used = set(re.findall(r"\bstreams:[a-z0-9_]+:[a-z0-9_]+", rule["expr"]))
                assert used <= recorded, f"{rule.get('alert') or rule.get('record')} reads {used - recorded}"
                if "record" in rule:
                    recorded.add(rule["record"])
