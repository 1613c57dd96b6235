from django.apps import AppConfig


class AttributesConfig(AppConfig):
    name = "attributes"
    verbose_name = "Attribute schemas"

    def ready(self) -> None:
        from attributes.selectors import pii_keys
        from audit.services import redact_keys_from

        redact_keys_from(pii_keys)
