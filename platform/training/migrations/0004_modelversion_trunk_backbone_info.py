"""ModelVersion.trunk_path / trunk_sha256 (the shipped trunk of a non-ImageNet model) and backbone_info
(which backbone ran and why). Tune/scratch versions trained before kept their trunk path in
train_info["trunk"]: it moves to trunk_path."""

from django.db import migrations, models


def trunk_from_train_info(apps, schema_editor):
    ModelVersion = apps.get_model("training", "ModelVersion")
    for version in ModelVersion.objects.exclude(train_info={}).only("pk", "train_info"):
        trunk = (version.train_info or {}).get("trunk")
        if trunk:
            ModelVersion.objects.filter(pk=version.pk).update(trunk_path=trunk)


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0003_evaluation_kind"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="backbone_info",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="trunk_path",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="trunk_sha256",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(trunk_from_train_info, migrations.RunPython.noop),
    ]
