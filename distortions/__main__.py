import sys

from distortions.cli import main

sys.exit(main())
