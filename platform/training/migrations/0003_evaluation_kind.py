"""Evaluation.kind: what a metric row is (human ceiling, baseline, official LPIPS, unweighted, initial or
trained heads), filled for existing rows from the metric names training.services gave them."""

from django.db import migrations, models


def kind_of(metric: str) -> str:
    """The kind of a stored metric name, as training.services named them before the field existed."""
    if metric == "human":
        return "human"
    if metric.startswith("trained "):
        return "trained"
    if metric.endswith(" (official)"):
        return "official"
    if metric.endswith(" unweighted"):
        return "unweighted"
    if metric.endswith(" untrained (init heads)"):
        return "untrained"
    return "baseline"


def fill_kinds(apps, schema_editor):
    Evaluation = apps.get_model("training", "Evaluation")
    metrics = Evaluation.objects.values_list("metric", flat=True).distinct()
    for metric in list(metrics):
        kind = kind_of(metric)
        if kind != "baseline":  # the column's default
            Evaluation.objects.filter(metric=metric).update(kind=kind)


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0002_training_claim_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluation",
            name="kind",
            field=models.CharField(
                choices=[("human", "human ceiling"), ("baseline", "baseline on images (l2, ssim, ...)"),
                         ("official", "official LPIPS heads"), ("unweighted", "backbone, unweighted"),
                         ("untrained", "backbone, initial heads"), ("trained", "heads trained on this study")],
                default="baseline", max_length=16,
            ),
        ),
        migrations.RunPython(fill_kinds, migrations.RunPython.noop),
    ]
