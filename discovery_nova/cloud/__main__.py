"""``python -m discovery_nova.cloud cloud up|status|down``."""

import sys

from discovery_nova.cloud.cli import main

sys.exit(main())
