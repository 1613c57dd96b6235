from __future__ import annotations

from django.conf import settings
from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Stable cursor pages; ``?page_size=`` up to ``IAM_MAX_PAGE_SIZE``."""

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = settings.IAM_MAX_PAGE_SIZE
