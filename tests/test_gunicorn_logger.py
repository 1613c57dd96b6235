"""The web role's gunicorn logger (iam_project/gunicorn.conf.py): no access-log work per request unless an
access log is asked for. The app logs every request itself (tests/test_runtime_processes.py)."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from unittest import mock

import pytest
from gunicorn import glogging
from gunicorn.config import Config

CONF = Path(__file__).resolve().parent.parent / "iam_project" / "gunicorn.conf.py"


@pytest.fixture
def conf(tmp_path):  # type: ignore[no-untyped-def]
    with mock.patch.dict(os.environ, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}):  # the file sets variables
        yield runpy.run_path(str(CONF))


def logger_for(conf, **settings):  # type: ignore[no-untyped-def]
    config = Config()
    for name in ("accesslog", "logconfig_dict", "loglevel", "logger_class"):
        config.set(name, conf[name])
    for name, value in settings.items():
        config.set(name, value)
    assert config.logger_class is conf["Logger"]
    return config.logger_class(config)


def test_no_access_log_means_no_atoms_built(conf) -> None:  # type: ignore[no-untyped-def]
    logger = logger_for(conf)
    assert logger.access_log_enabled  # gunicorn's own reckoning, with logconfig_dict set: it would build them
    with mock.patch.object(glogging.Logger, "atoms", side_effect=AssertionError("atoms built")) as atoms:
        logger.access(mock.Mock(), mock.Mock(), {}, mock.Mock())
    assert atoms.call_count == 0


def test_an_access_logfile_asked_for_is_served_as_gunicorn_serves_it(conf, tmp_path) -> None:  # type: ignore[no-untyped-def]
    logger = logger_for(conf, accesslog=str(tmp_path / "access.log"))
    with mock.patch.object(glogging.Logger, "atoms", return_value={}) as atoms:
        logger.access(mock.Mock(), mock.Mock(), {}, mock.Mock())
    assert atoms.call_count == 1
