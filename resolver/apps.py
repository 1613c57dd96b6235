from django.apps import AppConfig


class ResolverConfig(AppConfig):
    name = "resolver"
    verbose_name = "Policy Information Point"
