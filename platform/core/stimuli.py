"""The one rule for a stimulus's media path: ``stimuli/<sha256 of the PNG file>.png`` (what
distortions.imageio.write_png names). The media view, the annotator image API and export/restore accept
no other path, so a row naming ``/etc/hostname`` or ``../secret_key`` reads nothing."""

import re

STIMULUS_PATH = re.compile(r"stimuli/(?P<sha>[0-9a-f]{64})\.png")
