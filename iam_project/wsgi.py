"""WSGI entry point for gunicorn: ``gunicorn -c iam_project/gunicorn.conf.py iam_project.wsgi``.

The PIP's lookups are answered in front of Django's request cycle (``api/lean_wsgi.py``); every other
request goes to Django's WSGI handler unchanged.
"""

import os
from typing import Any

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iam_project.settings")

django_application = get_wsgi_application()
application: Any = django_application
if getattr(settings, "LEAN_ROUTES", None):  # not in a settings module without the app (bench/baseline_settings.py)
    from api.lean_wsgi import LeanWSGI

    application = LeanWSGI(django_application)
