"""What every tier shares: the tier marker each test gets from its directory, and the models
trained once per test session.

A test's tier is where it lives (tests/unit, tests/integration, tests/template, tests/e2e,
tests/browser), so `make unit` and friends select by directory and a file cannot claim a tier its
directory contradicts. A test that starts a server process is not a unit test: it
belongs in tests/integration (handlers and servers on this machine) or tests/e2e.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model_fixtures import write_classifier
from tests.template_resources import TEMPLATE_PATH

TESTS_DIR = Path(__file__).resolve().parent
# browser: a real chromium (`make browser-test` installs it); `make test` leaves it out.
TIERS = ("unit", "integration", "template", "e2e", "browser")


def tier_of(path: Path) -> str | None:
    relative = path.resolve().relative_to(TESTS_DIR)
    return relative.parts[0] if len(relative.parts) > 1 and relative.parts[0] in TIERS else None


# Under `pytest -n 2 --dist loadgroup` (make test) each group runs on one worker. Fixtures that
# build expensive things or share a cache on disk are session- or module-scoped, and xdist
# sets those up once per worker, so the tests that use them are kept together:
SAM_BUILD_FIXTURES = {"sam_build_dir", "host_runtime_dir", "function_artifacts"}  # and .build/


def xdist_group_of(item: pytest.Item) -> str:
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & SAM_BUILD_FIXTURES:
        return "sam-build"
    if "sample_churn_model_dir" in fixtures:
        return "sample-churn-model"
    return item.path.resolve().relative_to(TESTS_DIR).as_posix()  # its module's fixtures built once


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = []
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            misplaced.append(f"{item.nodeid}: not under one of tests/{{{','.join(TIERS)}}}")
            continue
        others = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS} - {tier})
        if others:
            misplaced.append(f"{item.nodeid}: marked {others} but lives in tests/{tier}; move the file")
        item.add_marker(getattr(pytest.mark, tier))
        if config.pluginmanager.hasplugin("xdist"):
            item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))
    if misplaced:
        raise pytest.UsageError("tests whose tier is not their directory:\n  " + "\n  ".join(misplaced))


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small synthetic churn classifier (tests/model_fixtures.py), trained once per session.

    Shared read-only: a test that needs a changed model writes its own with write_classifier.
    """
    directory = tmp_path_factory.mktemp("classifier")
    write_classifier(directory)
    return directory


@pytest.fixture(scope="session")
def sample_churn_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample churn model from samplefiles/classification, built once per session exactly as
    `make model` and `make demo` build it (template's ModelName, `modelwatch model build`).

    Shared read-only, like the model layer it stands in for.
    """
    from modelwatch.local.demo import ensure_sample_model

    directory = tmp_path_factory.mktemp("sample-churn-model")
    assert ensure_sample_model(directory, TEMPLATE_PATH)
    return directory
