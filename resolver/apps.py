from django.apps import AppConfig


class ResolverConfig(AppConfig):
    name = "resolver"
    verbose_name = "Policy Information Point"

    def ready(self) -> None:
        from outbox.changes import on_change
        from resolver.cache import invalidate_on_commit

        on_change(invalidate_on_commit)
