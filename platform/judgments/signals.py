"""What the crowd side tells the layers above it, without importing them (they connect in their
AppConfig.ready())."""

from django.dispatch import Signal

# Test judgments were stored and their transaction committed, in a study whose collection config trains
# (training.every set): sent once per transaction with study_id and n, how many (a batch of answers stores
# several). Studies that do not train send nothing, so they pay no reads.
judgment_accepted = Signal()
