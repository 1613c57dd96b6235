"""The lean door in front of Django's WSGI handler, for the PIP's GET and HEAD lookups.

:class:`api.lean.LeanApiMiddleware` answers the lookups inside Django's request cycle, which still
costs every request the ``request_started`` and ``request_finished`` signals (``reset_queries``,
``close_old_connections`` twice over every connection alias, ``close_caches``, ``reset_urlconf``),
the URLconf bookkeeping and ``HttpResponse.close()``. :class:`LeanWSGI` wraps the WSGI application
(``iam_project/wsgi.py``) and gives a GET or HEAD on a door route to the same door
(:meth:`~api.lean.LeanApiMiddleware.answer`) first, doing itself the one thing of those receivers a
lookup needs: the default connection is closed when it is unusable or older than ``CONN_MAX_AGE``,
before and after the request (and so are the read replicas' connections, when configured). Anything
the door does not answer goes to Django unchanged, marked so that the middleware does not try the
door a second time. Bodies of other methods are never read
here (a batch POST stays with the middleware: its body could not be read twice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.db import DEFAULT_DB_ALIAS, connections

from api.express import ExpressLane
from api.lean import ROUND_TRIP, TRIED, LeanApiMiddleware, literal_start, tidy

StartResponse = Callable[..., Any]
logger = logging.getLogger(__name__)


class LeanWSGI:
    def __init__(self, application: WSGIHandler) -> None:
        self.application = application
        self.door = LeanApiMiddleware(application.get_response)
        self.prefixes = tuple({literal_start(route.pattern) for route in self.door.routes if "GET" in route.methods})
        self.express = [ExpressLane(self.door, route) for route in self.door.routes if route.express is not None]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") not in ("GET", "HEAD")
            or not environ.get("PATH_INFO", "").startswith(self.prefixes)
            or environ.get("SCRIPT_NAME")
        ):
            return self.application(environ, start_response)
        for lane in self.express:
            try:
                answered = lane(environ)
            except Exception:
                # A bug of the lane: said loudly, and the door answers (the full stack if it fails too).
                logger.exception("the express lane failed; the door answers")
                environ.pop(ROUND_TRIP, None)
                break
            if answered is not None:
                start_response(answered[0], answered[1])
                return [answered[2]]
        used = [connections[alias] for alias in (DEFAULT_DB_ALIAS, *settings.DATABASE_REPLICAS)]
        for connection in used:
            tidy(connection)
        try:
            # A copy: WSGIRequest writes the decoded PATH_INFO back into the environ it is given, and a
            # request the door leaves to Django must reach it as the server sent it.
            response = self.door.answer(WSGIRequest(environ.copy()))
        finally:
            for connection in used:
                tidy(connection)
        if response is None:
            environ[TRIED] = True
            return self.application(environ, start_response)
        headers = list(response.items())
        headers.extend(("Set-Cookie", cookie.OutputString()) for cookie in response.cookies.values())
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return [response.content]
