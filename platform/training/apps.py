from django.apps import AppConfig


def _judgment_accepted(sender, *, study_id, n=1, **kwargs) -> None:
    """Continuous training: after each committed transaction of test judgments (n of them) in a study that
    trains, the debounced trigger decides whether a retrain is due (training.triggers: held per process
    while none can be)."""
    from training.triggers import judgment_announced

    judgment_announced(study_id=study_id, n=n)


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Metric training and evaluation"

    def ready(self) -> None:
        from judgments.signals import judgment_accepted

        judgment_accepted.connect(_judgment_accepted, dispatch_uid="training-judgment-accepted")
