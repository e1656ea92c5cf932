import sys

from reid_desktop.app import main

sys.exit(main())
