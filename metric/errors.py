class MetricError(ValueError):
    """Bad input or configuration for a metric; the message says what and how to fix it."""


class WeightsUnavailableError(MetricError):
    """Backbone or head weights are not available here (offline, or a missing file)."""
