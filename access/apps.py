from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access: API keys and tenant administrators"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from access import schema  # noqa: F401 - registers the OpenAPI extension
        from access.login_guard import on_user_login_failed

        user_login_failed.connect(on_user_login_failed, dispatch_uid="access.login_guard")
