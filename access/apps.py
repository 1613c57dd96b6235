from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access: API keys and tenant administrators"

    def ready(self) -> None:
        from access import schema  # noqa: F401 - registers the OpenAPI extension
