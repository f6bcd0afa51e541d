"""Ray job: search λ, μ, τ and the learning rate with Ray Tune (ASHA).

    ray job submit --working-dir . --runtime-env jobs/tune.runtime_env.yaml -- python jobs/tune.py ARGS

ARGS are those of ``raycondi tune`` (``raycondi tune --help``). The process exits with the command's status
(an uncaught exception exits 1), so ``ray job status`` says SUCCEEDED only when the command succeeded.
"""

import sys

from raycondi.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
