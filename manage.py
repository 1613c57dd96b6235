#!/usr/bin/env python
"""Django's command-line utility for iam-service."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iam_project.settings")
    from devtools.embedded import ensure_embedded_services

    ensure_embedded_services(sys.argv)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
