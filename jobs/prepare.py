"""Ray job: decode a video dataset once into Parquet clip shards for training.

    ray job submit --working-dir . --runtime-env jobs/prepare.runtime_env.yaml -- python jobs/prepare.py ARGS

ARGS are those of ``raycondi prepare`` (``raycondi prepare --help``). The process exits with the command's status
(an uncaught exception exits 1), so ``ray job status`` says SUCCEEDED only when the command succeeded.
"""

import sys

from raycondi.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
