"""Settings for the test suite: the real settings in development mode, plus test-only switches.

The database is the one in ``TEST_DATABASE_URL`` / ``DATABASE_URL`` when set; otherwise
``tests/conftest.py`` starts a real PostgreSQL from the pgserver wheel (never from settings).
"""

import os

os.environ.setdefault("IAM_ENV", "development")
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]

from iam_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; production uses Argon2
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
CELERY_TASK_ALWAYS_EAGER = True  # import jobs run in the test's process when their transaction commits
