#!/usr/bin/env python
"""Django's command-line utility. platform/ is a source root, never a package."""

import os
import sys
from pathlib import Path


def main() -> None:
    root = Path(__file__).resolve().parent
    # platform/ holds the Django packages (config, core, studies, ...). It is put on the path
    # *after* the standard library, so `import platform` still returns the stdlib module.
    for path in (str(root), str(root / "platform")):
        if path not in sys.path:
            sys.path.append(path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
