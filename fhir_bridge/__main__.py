"""`python -m fhir_bridge` runs the command line."""

import sys

from fhir_bridge.cli import main

sys.exit(main())
