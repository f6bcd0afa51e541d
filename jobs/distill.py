"""Ray job: distil the two-headed student from the teacher's stored logits.

    ray job submit --working-dir . --runtime-env jobs/distill.runtime_env.yaml -- python jobs/distill.py ARGS

ARGS are those of ``raycondi distill`` (``raycondi distill --help``). The process exits with the command's status
(an uncaught exception exits 1), so ``ray job status`` says SUCCEEDED only when the command succeeded.
"""

import sys

from raycondi.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
