"""Ray job: label a video archive: Parquet labels, one row per video.

    ray job submit --working-dir . --runtime-env jobs/label.runtime_env.yaml -- python jobs/label.py ARGS

ARGS are those of ``raycondi label`` (``raycondi label --help``). The process exits with the command's status
(an uncaught exception exits 1), so ``ray job status`` says SUCCEEDED only when the command succeeded.
"""

import sys

from raycondi.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
