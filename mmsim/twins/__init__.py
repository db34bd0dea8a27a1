"""Digital twins: sim agents fitted to recorded runs, their checks, and study planning.

* :func:`fit_run` — fit every agent of a run (:func:`read_run`) by maximum likelihood;
* :func:`predict` — posterior predictive figures of a run and their calibration;
* :func:`plan` — items x seeds x rounds needed for a target precision (power curve);
* :func:`simulate` — the vectorised simulator of the sim agent's generative model.

See docs/twins.md.
"""

from mmsim.twins.commands import fit_and_check, fit_twins, plan_scenario
from mmsim.twins.data import RunData, read_run
from mmsim.twins.fit import Estimate, TwinFit, fit_run
from mmsim.twins.plan import Target, plan
from mmsim.twins.predict import Prediction, predict
from mmsim.twins.simulate import AgentDraws, Outcome, Protocol, simulate
from mmsim.twins.twin_file import twin_yaml, write_twin

__all__ = ["AgentDraws", "Estimate", "Outcome", "Prediction", "Protocol", "RunData",
           "Target", "TwinFit", "fit_and_check", "fit_run", "fit_twins", "plan",
           "plan_scenario", "predict", "read_run", "simulate", "twin_yaml", "write_twin"]
