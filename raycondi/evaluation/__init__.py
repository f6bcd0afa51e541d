"""The paper's evaluation (Sec. IV, Tables III-V): every selection strategy on real per-clip outputs.

* :mod:`~raycondi.evaluation.inference` -- the teacher and the students over a split's clips once (Ray Data),
  and the measured per-clip costs;
* :mod:`~raycondi.evaluation.tables` -- the tables' arithmetic as pure numpy over :mod:`raycondi.selection`;
* :mod:`~raycondi.evaluation.timing` -- what a labelling run decodes and runs per strategy, priced per clip;
* :mod:`~raycondi.evaluation.report` -- CSV, Markdown tables, PNG plots;
* :mod:`~raycondi.evaluation.job` -- :func:`evaluate`, the ``raycondi evaluate`` job.
"""

from raycondi.evaluation.job import EvaluateConfig, EvaluationError, EvaluationSummary, evaluate

__all__ = ["EvaluateConfig", "EvaluationError", "EvaluationSummary", "evaluate"]
