"""The baseline of ``bench/pip.py``: a minimal DRF ``APIView`` in a Django app of its own.

No middleware, no authentication, no permission, no throttle, one URL (``/bench/baseline``) — what
a user would compare the PIP with ("DRF's own hello world"). Served by the same gunicorn
configuration as the service (``iam_project/gunicorn.conf.py``, same workers), so it shares the
database settings the configuration's start-up check needs; the view never queries.
"""

from iam_project.settings import (  # noqa: F401 - what the gunicorn configuration's start-up check reads
    ALLOWED_HOSTS,
    DATABASES,
    DB_STARTUP_WAIT_SECONDS,
    DEBUG,
    LOGGING,
    SECRET_KEY,
)

INSTALLED_APPS = ["rest_framework"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.baseline_urls"
USE_TZ = True
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}
