import sys

from metric.cli import main

sys.exit(main())
