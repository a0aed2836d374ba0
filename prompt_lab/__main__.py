import sys

from prompt_lab.cli import main

sys.exit(main())
