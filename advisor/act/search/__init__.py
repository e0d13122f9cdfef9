"""`advisor search`: the planned search, run with Optuna on the user's task.

advisor does not optimize hyperparameters itself: Optuna's samplers, pruners and storages do.
This module chooses and configures them from the plan (advisor's space format,
:mod:`advisor.space`), owns the objective (the trainer of :mod:`advisor.act.train`, or the
user's own `objective(hp, report)`), and runs the phases:

1. **search**: the baseline (the user's current configuration) first, then the sampler's
   configurations; the validation metric reported every epoch to the pruner; a global trial
   budget (MaxTrialsCallback, counted over COMPLETE, PRUNED and FAIL trials) that holds across
   resumes and workers; the plan's stop rules (the best improves by less than 0.1% per trial over
   the last N trials; the same best for N trials); a wall-clock --timeout per invocation.
2. **final**: the best `top_k` distinct configurations re-run, full length and unpruned, with
   `seeds_final` new seeds (seed+1 ..), as trials of the same study (user attributes `final`,
   `config`, `seed`), reported as mean and standard deviation.
3. **audit**: `advisor audit`'s rules on the finished study.

The study's storage is plain Optuna (SQLite by default; a journal file for several workers on
one host; PostgreSQL / MySQL for many machines), so optuna-dashboard opens it. The search's
settings (task, space, budget, seed ...) are stored in the study's user attributes
(`advisor_search`), so `--resume` and `advisor worker` need only the storage and the study name.

Per trial (user attributes): `hp` (every hyperparameter passed to the task, decoded, with its
`seed` and planned `epochs`), `epochs` (epochs trained), `worker` (host:pid), `baseline`, and on failure
`fail_reason`; a trial whose loss or metric turned non-finite is pruned at once with
`pruned_reason` and `diverged`; a trial cut off by Ctrl-C or a killed process is FAIL with
`interrupted` (it does not count against the budget). Each process that runs trials registers
itself before its first one (study system attribute `advisor_worker:host:pid`), so that `--resume`
fails at once a trial left RUNNING even by a process killed before it recorded its `worker`, when
no registered process that could have made it is left (a process on another host, or a study
without the register: after 60 seconds, or by the storage's heartbeat).

The JSON document (schema ``advisor.search/1``) of `advisor search --json`:

    schema_version  "advisor.search/1"
    task, study, storage, dashboard (the optuna-dashboard command), device, resumed
    direction, metric, strategy, sampler {type, args}, pruner {type, args}
    budget          {trials, timeout_s, epochs, top_k, seeds_final}
    stopped_by      budget | grid | stale | timeout | epochs | none (a search whose first trials all
                    fail stops with an error instead)
    best            {number, value, params, baseline} or null: the best search trial
    baseline        {number, value, params} or null
    trials          {complete, pruned, failed, interrupted, running, total}: the search trials
    final           [{params, mean, std, seeds, values, failed, search_number, search_value}], best first
    audit           [finding]: advisor audit's findings on the study
    epochs_used     epochs trained by this study (search + final)
    epochs_search, epochs_final
    epochs_saved_by_pruning   sum over pruned trials of (planned - trained) epochs
    failures        [{number, reason}]: the first failed or diverged trials
    seconds, notes

Layout: `space` (the plan's space in Optuna: suggestions, grids, samplers, pruners), `storage`,
`objective` (the spec and what one trial runs), `trials` (bookkeeping), `run` (the search, its
final seeds, the audit, workers), `request` (the command line checked before anything is
written), `sanity` (the pre-search check), `__main__` (a worker process).
"""

from advisor.act.search.objective import Runner, SearchSpec, budget_trials, make_objective
from advisor.act.search.request import Request, prepare
from advisor.act.search.run import (
    Event, FinalResult, Search, SearchReport, audit_findings, run, run_worker,
)
from advisor.act.search.sanity import SanityReport, sanity
from advisor.act.search.space import (
    demo_space, grid_points, make_pruner, make_sampler, plan_space, pruner_spec, sampler_spec,
    space_difference, space_from_file, suggest, to_params,
)
from advisor.act.search.storage import open_storage, storage_url
from advisor.act.search.trials import trial_epochs

__all__ = [
    "Event", "FinalResult", "Request", "Runner", "SanityReport", "Search", "SearchReport", "SearchSpec",
    "audit_findings", "budget_trials", "demo_space", "grid_points", "make_objective", "make_pruner",
    "make_sampler", "open_storage", "plan_space", "prepare", "pruner_spec", "run", "run_worker",
    "sampler_spec", "sanity", "space_difference", "space_from_file", "storage_url", "suggest",
    "to_params", "trial_epochs",
]
