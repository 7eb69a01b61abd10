"""``python -m opbreak.unlock``: the README's recovery after a crash or a hard kill.

Runs ``snakemake --unlock`` only when no run of this folder and no measurement on this host is alive
(opbreak.locks); otherwise it names the live process and exits 2.
"""

import sys

from .locks import unlock_main

if __name__ == "__main__":
    sys.exit(unlock_main())
