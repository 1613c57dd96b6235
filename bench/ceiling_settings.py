"""Settings for ``bench/pip.py``: the app's settings with one extra URL, ``/bench/ceiling``.

Every benchmark scenario runs gunicorn with ``DJANGO_SETTINGS_MODULE=bench.ceiling_settings`` so
that the ceiling and the PIP endpoints are served by the very same stack (middleware, API-key
authentication, throttling, gunicorn configuration). Nothing else differs from production.
"""

import os

from iam_project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.ceiling_urls"
LEAN_ROUTES = [*LEAN_ROUTES, "bench.ceiling_urls.LEAN_ROUTES"]  # noqa: F405

if os.environ.get("BENCH_NO_THROTTLE"):  # bench/pip.py --no-throttle: to measure what the throttle costs
    REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}  # noqa: F405
