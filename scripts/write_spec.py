"""Write one config's resolved spec: the measure job's only input."""

import json
import sys

from opbreak.io import atomic_write_text

sys.stderr = open(snakemake.log[0], "w")
atomic_write_text(snakemake.output[0], json.dumps(snakemake.params.spec, indent=1, sort_keys=True))
