class DistortionError(ValueError):
    """Raised for an unknown distortion, an invalid spec or invalid params; the message says which."""


class RecordMismatchError(DistortionError):
    """A record was re-applied to an input, or produced an output, whose hash does not match."""
