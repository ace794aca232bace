from django.apps import AppConfig


def _allow_prepared_statements(sender, connection, **kwargs) -> None:
    """Django opens psycopg connections with prepared statements off (prepare_threshold=None, for
    connection poolers in transaction mode). The answer path asks for them explicitly (judgments.sql
    .HotCursor); a threshold no query reaches keeps every other statement unprepared, as before. Set
    PERCEPTLAB_PREPARED_STATEMENTS=0 behind a transaction-mode pooler."""
    from django.conf import settings

    if (
        connection.vendor == "postgresql"
        and settings.PREPARED_STATEMENTS
        and connection.connection.prepare_threshold is None
    ):
        connection.connection.prepare_threshold = 2**31 - 1


class JudgmentsConfig(AppConfig):
    name = "judgments"
    verbose_name = "Workers, assignments and judgments"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from judgments.selectors import study_stats
        from studies.selectors import study_stats_provider_set

        connection_created.connect(_allow_prepared_statements, dispatch_uid="judgments-prepared-statements")
        study_stats_provider_set(study_stats)  # the researcher API's study detail shows crowd progress and QC
