"""What the crowd side tells the layers above it, without importing them (they connect in their
AppConfig.ready())."""

from django.dispatch import Signal

# A test judgment was stored and its transaction committed, in a study whose collection config trains
# (training.every set): sent with study_id. Studies that do not train send nothing, so they pay no reads.
judgment_accepted = Signal()
