"""Math word problems solved by Python programs, and verified by running them.

One module for every place tinyforge solves math: TinyGSM's generation and
verification, and the evolution flow's solvability gate. It owns the solution
prompt (:mod:`~pipeline.solving.prompt`), finding the function in a model's
reply (:mod:`~pipeline.solving.extract`), sampling k solutions
(:mod:`~pipeline.solving.solver`), the vote and the re-run
(:mod:`~pipeline.solving.verify`, typed :class:`Verified` results, a vote per
distinct program: :mod:`~pipeline.solving.canonical`), gold answers
(:mod:`~pipeline.solving.answers`), the checks a problem statement must pass
first (:mod:`~pipeline.solving.questions`), and how often the whole is right:
calibration on problems with known answers and the verifier rows
(:mod:`~pipeline.solving.calibrate`), its report section
(:mod:`~pipeline.solving.report`) and ``tinyforge compare``
(:mod:`~pipeline.solving.compare`).
"""

from pipeline.solving.answers import parse_answer, same_answer
from pipeline.solving.prompt import SOLUTION_TEMPLATE, SOLUTION_TEMPLATE_ID, WorkedExample, shipped_example, solution_prompt
from pipeline.solving.questions import check_question
from pipeline.solving.solver import Ask, Sampled, Solver, sample_solutions
from pipeline.solving.verify import Rule, Verified, reexecute, verify

__all__ = [
    "SOLUTION_TEMPLATE", "SOLUTION_TEMPLATE_ID", "Ask", "Rule", "Sampled", "Solver", "Verified", "WorkedExample",
    "check_question", "parse_answer", "reexecute", "same_answer", "sample_solutions", "shipped_example",
    "solution_prompt", "verify",
]
