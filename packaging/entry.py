"""PyInstaller's entry script: the frozen ``reid-desktop`` executable is ``reid_desktop.app:main``."""

import sys

from reid_desktop.app import main

if __name__ == "__main__":
    sys.exit(main())
