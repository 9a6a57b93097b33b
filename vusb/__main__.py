import sys

from vusb.cli import main

sys.exit(main())
