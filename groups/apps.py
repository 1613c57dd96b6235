from django.apps import AppConfig


class GroupsConfig(AppConfig):
    name = "groups"
    verbose_name = "Groups"

    def ready(self) -> None:
        from attributes import holders
        from groups.models import Group

        holders.register("group", lambda tenant_id: Group.objects.filter(tenant_id=tenant_id))
