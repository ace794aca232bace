from django.db import migrations

RESEARCHERS = "researchers"


def create_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name=RESEARCHERS)


class Migration(migrations.Migration):
    """The "researchers" group exists from the start, so an admin can put a new user in it in the admin."""

    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_group, migrations.RunPython.noop)]
