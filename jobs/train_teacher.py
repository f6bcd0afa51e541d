"""Ray job: train the teacher on Ray Train from clip shards.

    ray job submit --working-dir . --runtime-env jobs/train_teacher.runtime_env.yaml -- python jobs/train_teacher.py ARGS

ARGS are those of ``raycondi train-teacher`` (``raycondi train-teacher --help``). The process exits with the command's status
(an uncaught exception exits 1), so ``ray job status`` says SUCCEEDED only when the command succeeded.
"""

import sys

from raycondi.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-teacher", *sys.argv[1:]]))
