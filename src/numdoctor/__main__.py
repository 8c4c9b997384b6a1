import sys

from numdoctor.cli import main

sys.exit(main())
