import sys

from npuflow.cli import main

sys.exit(main())
