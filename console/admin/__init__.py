"""The console: one ModelAdmin module per app, registered with Django's admin site on import."""

from console.admin import access, attributes, audit, groups, imports, outbox, tenants, users  # noqa: F401 - registers the admins
