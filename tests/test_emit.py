"""Each emit target: the Optuna script runs, the W&B sweep is valid, the Ray module is wired, and
advisor's space YAML round-trips through `advisor.space.Space`."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import types

import pytest
import yaml

from conftest import run_cli

from advisor.advice.plan import Plan, PlanInput, build_plan
from advisor.emit import emit
from advisor.facts.hardware import detect
from advisor.space import Space

import test_plan  # noqa: F401  (registers plan and hardware on the app when cli.py does not yet)


def make_plan(budget: float, trial: float, gpus: int = 1, **kw) -> Plan:
    return build_plan(PlanInput(budget_hours=budget, trial_hours=trial, hardware=detect(gpus=gpus), **kw))


PLANS = {
    "grid-5h": dict(budget=5, trial=0.5, epochs=6, current={"learning_rate": 1e-3}, optimizer="adamw"),
    "manual-40m": dict(budget=0.67, trial=8 / 60, epochs=4),
    "random-50h": dict(budget=50, trial=3.0, epochs=6, optimizer="adamw",  # under 20 trials: random (P103)
                       current={"learning_rate": 1e-3, "batch_size": 64, "weight_decay": 0.0},
                       params=["learning_rate", "batch_size", "weight_decay", "warmup"]),
    "bayes-300h-conditional": dict(budget=300, trial=1.0, epochs=6,
                                   params=["learning_rate", "optimizer", "batch_size", "weight_decay", "dropout"]),
    "hyperband-1200h": dict(budget=1200, trial=1.0, epochs=9, current={"learning_rate": 3e-4}, optimizer="adam"),
    "grid-2-params-conditional": dict(budget=8, trial=0.5, epochs=4, params=["learning_rate", "optimizer"]),
    "parallel-journal": dict(budget=100, trial=1.0, epochs=6, gpus=4, optimizer="sgd"),
    "int-params": dict(budget=300, trial=1.0, epochs=6, optimizer="sgd",
                       params=["learning_rate", "momentum", "width", "depth", "grad_clip"],
                       current={"width": 256, "depth": 4}),
    "bayes-50h-epochs-assumed": dict(budget=50, trial=1.0, optimizer="adamw"),
    "hyperband-1200h-epochs-assumed": dict(budget=1200, trial=1.0, optimizer="adam"),
}


def plan_for(key: str) -> Plan:
    kw = dict(PLANS[key])
    return make_plan(kw.pop("budget"), kw.pop("trial"), kw.pop("gpus", 1), **kw)


def toy_objective(hp: dict, report) -> float:
    """Peaks at learning rate 1e-3 (any optimizer); reports every epoch so pruners can act."""
    score = 0.0
    lr = hp["learning_rate"]
    for epoch in range(1, 5):
        score = (1 - (math.log10(lr) + 3) ** 2 / 20) * epoch / 4 - 0.1 * hp.get("dropout", 0.0) \
            - hp.get("weight_decay", 0.0) + 0.001 * hp["seed"]
        report(score, epoch)
    return score


def _settings(obj) -> dict:
    """The plain settings of a sampler or pruner (private attributes Optuna keeps its arguments in)."""
    out = {}
    for key, value in vars(obj).items():
        if isinstance(value, (int, float, str, bool, type(None))):
            out[key] = value
        elif type(value).__module__.startswith("optuna.") and hasattr(value, "__dict__") and "rng" not in key:
            out[key] = (type(value).__name__, _settings(value))
    return out


def load_module(path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- Optuna

optuna = pytest.importorskip("optuna")


@pytest.mark.parametrize("key", list(PLANS))
def test_optuna_script_runs_a_toy_objective(key: str, tmp_path) -> None:
    plan = plan_for(key)
    path = tmp_path / f"search_{key.replace('-', '_')}.py"
    path.write_text(emit(plan, "optuna", path.name))
    module = load_module(path, path.stem)
    storage = f"sqlite:///{tmp_path / 'study.db'}" if plan.storage != "journal" else str(tmp_path / "study.journal")
    n_explore = len(plan.grid) if plan.grid else 8
    results = module.run(toy_objective, storage=storage, n_explore=n_explore, n_refine=4 if module.N_REFINE else 0,
                         top_k=2, seeds=2)
    store = module.make_storage(storage)
    explore = optuna.load_study(study_name=plan.name, storage=store)
    trials = explore.get_trials(deepcopy=False)
    assert trials and all(t.state.is_finished() for t in trials)
    # the sampler and pruner are the ones `advisor search` builds for the same plan (one definition)
    from advisor.act.search.space import make_pruner, make_sampler
    from advisor.emit.space import to_space

    space = to_space(plan)
    ours = make_sampler(space, module.SEED, plan.budget.workers, 0, plan.n_configs)
    theirs = module.make_sampler()
    assert type(theirs) is type(ours)
    assert _settings(theirs) == _settings(ours)
    pruner = make_pruner(space, module.EPOCHS)
    assert type(module.make_pruner()) is type(pruner) and _settings(module.make_pruner()) == _settings(pruner)
    expected = {"none": "NopPruner", "median": "MedianPruner", "patient": "PatientPruner",
                "hyperband": "HyperbandPruner", "successive_halving": "SuccessiveHalvingPruner"}[plan.pruner.type]
    assert type(pruner).__name__ == expected
    # EPOCHS set by the user moves the rungs: the pruner is what the plan would be for those epochs
    if plan.pruner.type != "none":
        from advisor.advice.plan import _pruner

        module.EPOCHS = 60
        replanned = plan.model_copy(update={"pruner": _pruner(plan.pruner.type, 60, plan.pruner.cost_share)})
        at60 = make_pruner(to_space(replanned), 60)
        assert _settings(module.make_pruner()) == _settings(at60)
        assert _settings(at60) != _settings(pruner)  # the check can tell: 60 epochs is another pruner
    # the baseline is trial 0, exactly
    if plan.baseline:
        hp0 = trials[0].user_attrs["hp"]
        for name, value in plan.baseline.items():
            assert hp0[name] == pytest.approx(value), (name, hp0)
    # audit reads the studies as they are: the user's baseline in explore, none in refine (its
    # first trial is the explore best carried over, not a baseline; report 1.7)
    from advisor.ingest.study import load_study

    table = load_study(storage if plan.storage != "journal" else str(tmp_path / "study.journal"), plan.name)
    assert bool(table.trials["baseline"].iloc[0]) == bool(plan.baseline)
    if module.N_REFINE:
        refined = load_study(storage if plan.storage != "journal" else str(tmp_path / "study.journal"),
                             plan.name + "-refine")
        assert not table.trials.empty and not refined.trials["baseline"].any()
    # a grid or manual sweep runs exactly its configurations
    if plan.grid:
        ran = [t.user_attrs["hp"]["learning_rate"] for t in trials]
        assert sorted({g["learning_rate"] for g in plan.grid}) == sorted(
            set(ran) - ({plan.baseline["learning_rate"]} if plan.baseline and plan.baseline not in plan.grid else set()))
    # weight decay: log range from a positive floor, and exactly 0 as a choice
    for t in trials:
        hp = t.user_attrs["hp"]
        assert hp["seed"] == module.SEED
        if "weight_decay" in hp:
            assert hp["weight_decay"] == 0.0 or hp["weight_decay"] >= plan.param("weight_decay").low
        if plan.param("learning_rate").by:
            lo, hi = plan.param("learning_rate").ranges[hp["optimizer"]]
            assert lo <= hp["learning_rate"] <= hi or hp == trials[0].user_attrs["hp"]
    # the final phase: the finalists with several seeds, mean and std
    assert results and {"hp", "mean", "std", "runs"} <= set(results[0])
    assert results[0]["runs"] == 2
    means = [r["mean"] for r in results]
    assert means == sorted(means, reverse=plan.direction == "maximize")
    final = optuna.load_study(study_name=plan.name + "-final", storage=store)
    assert len(final.trials) == 2 * len(results)


def test_optuna_script_resumes_within_the_global_budget(tmp_path) -> None:
    plan = plan_for("random-50h")
    path = tmp_path / "search_resume.py"
    path.write_text(emit(plan, "optuna", path.name))
    module = load_module(path, "search_resume")
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    module.run(toy_objective, storage=storage, phases=("explore",), n_explore=6)
    module.run(toy_objective, storage=storage, phases=("explore",), n_explore=6)  # a second worker / a resume
    assert len(optuna.load_study(study_name=plan.name, storage=storage).trials) == 6
    module.run(toy_objective, storage=storage, phases=("explore",), n_explore=9)
    assert len(optuna.load_study(study_name=plan.name, storage=storage).trials) == 9


def test_optuna_script_placeholder_objective_says_what_to_do(tmp_path) -> None:
    path = tmp_path / "search.py"
    path.write_text(emit(plan_for("random-50h"), "optuna", path.name))
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "NotImplementedError" in proc.stderr and "fill in objective" in proc.stderr
    assert not (tmp_path / "advisor-plan.db").exists()  # nothing was created before the objective exists
    source = path.read_text()
    for text in ("MaxTrialsCallback", "enqueue_trial", "QMCSampler(", "SuccessiveHalvingPruner(", "min_resource=",
                 "reduction_factor=", "import optuna"):
        assert text in source
    assert "advisor" not in {line.split()[1] for line in source.splitlines() if line.startswith("import ")}


# --------------------------------------------------------------------------- W&B

WANDB_TOP = {"program", "entity", "project", "description", "name", "method", "metric", "parameters",
             "early_terminate", "command", "run_cap", "job", "image_uri", "apiVersion", "kind", "controller",
             "scheduler", "metrics"}
WANDB_DISTRIBUTIONS = {"constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                       "log_uniform_values", "q_log_uniform", "q_log_uniform_values", "inv_log_uniform",
                       "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta"}
WANDB_PARAM_KEYS = {"values", "value", "distribution", "min", "max", "q", "mu", "sigma", "a", "b",
                    "probabilities", "parameters"}


def check_wandb(config: dict) -> None:
    """The parts of W&B's sweep schema that an emitted sweep uses."""
    assert set(config) <= WANDB_TOP
    assert config["method"] in ("grid", "random", "bayes")
    assert set(config["metric"]) <= {"name", "goal", "target", "impute", "impute_while_running"}
    assert config["metric"]["goal"] in ("minimize", "maximize") and config["metric"]["name"]
    assert config["parameters"]
    for name, spec in config["parameters"].items():
        assert set(spec) <= WANDB_PARAM_KEYS, (name, spec)
        dist = spec.get("distribution")
        assert dist is None or dist in WANDB_DISTRIBUTIONS
        assert dist != "log_uniform", "log_uniform takes exponents; the plan's bounds are values"
        if dist in ("log_uniform_values", "q_log_uniform_values"):
            assert 0 < spec["min"] < spec["max"]
        if dist in ("uniform", "int_uniform"):
            assert spec["min"] < spec["max"]
        if dist == "int_uniform":
            assert isinstance(spec["min"], int) and isinstance(spec["max"], int)
        if dist is None:
            assert "values" in spec or "value" in spec
            if "values" in spec:
                assert isinstance(spec["values"], list) and spec["values"]
        if config["method"] == "grid":
            assert "values" in spec or "value" in spec, "a grid sweep needs explicit values"
    if "run_cap" in config:
        assert isinstance(config["run_cap"], int) and config["run_cap"] > 0
    if "early_terminate" in config:
        et = config["early_terminate"]
        assert et["type"] == "hyperband" and set(et) <= {"type", "min_iter", "max_iter", "s", "eta", "strict"}
        assert "min_iter" in et or {"max_iter", "s"} <= set(et)
        assert et.get("min_iter", 1) >= 1 and et.get("eta", 3) > 1


@pytest.mark.parametrize("key", list(PLANS))
def test_wandb_sweep_is_valid(key: str) -> None:
    plan = plan_for(key)
    config = yaml.safe_load(emit(plan, "wandb", "sweep.yaml"))
    check_wandb(config)
    assert config["method"] == {"manual": "grid", "grid": "grid", "random": "random", "bayesian": "bayes"}[plan.strategy]
    assert config["metric"] == {"name": plan.metric, "goal": plan.direction}
    if "planned" in config["parameters"]:  # a conditional grid: the planned configurations, not crossed (2.1)
        assert plan.param("learning_rate").by and config["parameters"]["planned"]["values"] == plan.grid
        return
    lr = config["parameters"]["learning_rate"]
    if plan.strategy in ("random", "bayesian") and not plan.param("learning_rate").by:
        # values, not exponents: the same numbers as the plan
        assert lr == {"distribution": "log_uniform_values", "min": plan.param("learning_rate").low,
                      "max": plan.param("learning_rate").high}
        assert config["run_cap"] == plan.n_configs
    if plan.pruner.type != "none":
        assert config["early_terminate"]["type"] == "hyperband"
    else:
        assert "early_terminate" not in config
    if plan.param("weight_decay") and plan.strategy in ("random", "bayesian"):
        wd = config["parameters"]["weight_decay"]
        assert wd["distribution"] == "log_uniform_values" and wd["min"] > 0


# --------------------------------------------------------------------------- Ray Tune

class _Domain:
    def __init__(self, kind: str, *args):
        self.kind, self.args = kind, args


def _fake_ray(monkeypatch) -> types.SimpleNamespace:
    """Just enough of ray.tune to import the emitted module and call run()."""
    calls = types.SimpleNamespace(tuner=None, reports=[])
    tune = types.ModuleType("ray.tune")
    for kind in ("loguniform", "uniform", "choice", "grid_search", "randint", "lograndint", "sample_from"):
        setattr(tune, kind, (lambda k: lambda *a: _Domain(k, *a))(kind))
    tune.TuneConfig = lambda **kw: types.SimpleNamespace(**kw)
    tune.RunConfig = lambda **kw: types.SimpleNamespace(**kw)
    tune.report = lambda metrics: calls.reports.append(metrics)
    tune.with_resources = lambda trainable, resources: (calls.__setattr__("resources", resources), trainable)[1]

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config=None):
            calls.tuner = self
            self.trainable, self.param_space, self.tune_config = trainable, param_space, tune_config

        def fit(self):
            config = {}
            for name, dom in self.param_space.items():
                if not isinstance(dom, _Domain):
                    config[name] = dom
                elif dom.kind == "grid_search":
                    config[name] = dom.args[0][0]
                elif dom.kind in ("loguniform", "uniform"):
                    config[name] = math.sqrt(dom.args[0] * dom.args[1]) if dom.kind == "loguniform" else dom.args[0]
                elif dom.kind == "choice":
                    config[name] = dom.args[0][0]
                elif dom.kind in ("randint", "lograndint"):
                    config[name] = dom.args[0]
            for name, dom in self.param_space.items():
                if isinstance(dom, _Domain) and dom.kind == "sample_from":
                    config[name] = dom.args[0](types.SimpleNamespace(config=config))
            self.trainable(config)
            return "results"

        @staticmethod
        def can_restore(path) -> bool:  # no experiment kept: the module starts a new one
            calls.restore_checked = path
            return False

    tune.Tuner = Tuner
    schedulers = types.ModuleType("ray.tune.schedulers")
    schedulers.ASHAScheduler = lambda **kw: types.SimpleNamespace(kind="asha", **kw)
    basic = types.ModuleType("ray.tune.search.basic_variant")
    basic.BasicVariantGenerator = lambda **kw: types.SimpleNamespace(kind="basic", **kw)
    optuna_search = types.ModuleType("ray.tune.search.optuna")
    optuna_search.OptunaSearch = lambda **kw: types.SimpleNamespace(kind="optuna", **kw)
    search = types.ModuleType("ray.tune.search")
    search.ConcurrencyLimiter = lambda searcher, max_concurrent: types.SimpleNamespace(
        kind="limiter", searcher=searcher, max_concurrent=max_concurrent)
    ray = types.ModuleType("ray")
    ray.tune = tune
    ray.__version__ = "2.60.0"
    ray.is_initialized = lambda: True
    ray.cluster_resources = lambda: {"CPU": 2.0}
    for name, mod in {"ray": ray, "ray.tune": tune, "ray.tune.schedulers": schedulers,
                      "ray.tune.search": search,
                      "ray.tune.search.basic_variant": basic, "ray.tune.search.optuna": optuna_search}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


@pytest.mark.parametrize("key", list(PLANS))
def test_ray_module_has_param_space_and_scheduler(key: str, tmp_path, monkeypatch) -> None:
    plan = plan_for(key)
    calls = _fake_ray(monkeypatch)
    path = tmp_path / f"ray_{key.replace('-', '_')}.py"
    path.write_text(emit(plan, "ray", path.name))
    module = load_module(path, path.stem)
    space = module.param_space
    if plan.strategy in ("grid", "manual"):
        grid = space[module.GRID_KEY]
        assert grid.kind == "grid_search"
        key = lambda c: json.dumps(c, sort_keys=True)  # noqa: E731
        assert sorted(map(key, grid.args[0])) == sorted(map(key, plan.grid + (
            [plan.baseline] if plan.baseline and plan.baseline not in plan.grid else [])))
    else:
        for p in plan.params:
            dom = space[p.name + module.UNIT] if p.by else space[p.name]
            expected = {"loguniform": "loguniform", "uniform": "uniform", "categorical": "choice",
                        "int": "randint", "intlog": "lograndint"}[p.distribution]
            if p.by:  # a unit draw placed in its optimizer's range, seeded and readable by OptunaSearch
                expected = "uniform"
            assert dom.kind == expected, (p.name, dom.kind)
            if expected == "loguniform" and not p.by:
                assert dom.args[0] == pytest.approx(p.low / 10 if p.zero else p.low)
                assert dom.args[1] == pytest.approx(p.high)
        assert module.make_tune_config().num_samples == plan.n_configs
    for name, value in plan.fixed.items():
        assert space[name] == value
    cfg = module.make_tune_config()
    assert cfg.metric == plan.metric and cfg.mode == ("max" if plan.direction == "maximize" else "min")
    if plan.pruner.type == "none":
        assert cfg.scheduler is None
    else:
        assert cfg.scheduler.kind == "asha" and cfg.scheduler.max_t == module.EPOCHS
        assert cfg.scheduler.reduction_factor == (plan.pruner.reduction_factor or 3)
    alg = cfg.search_alg
    if plan.strategy == "bayesian":  # behind a ConcurrencyLimiter: Ray ignores max_concurrent_trials otherwise
        assert alg.kind == "limiter" and alg.max_concurrent == plan.budget.workers
        alg = alg.searcher
        assert alg.kind == "optuna"
    else:
        assert alg.kind == "basic" and alg.max_concurrent == plan.budget.workers
    if plan.baseline:
        if plan.strategy in ("grid", "manual"):  # the grid's first configuration (report 3.2)
            assert space[module.GRID_KEY].args[0][0] == plan.baseline and alg.points_to_evaluate is None
        else:
            point = module.hp_from_config(alg.points_to_evaluate[0])
            assert {k: point[k] for k in plan.baseline} == pytest.approx(plan.baseline)
            if plan.strategy == "bayesian":  # OptunaSearch needs every searched parameter (3.1)
                assert {p.name for p in plan.params} <= set(point)
    # run() drives the user's function with the hyperparameters and reports each epoch
    assert module.run(toy_objective) == "results"
    assert calls.reports and plan.metric in calls.reports[-1]
    assert calls.resources == {"cpu": 1, "gpu": 1 if plan.hardware["cuda"] else 0} or (
        plan.hardware["cuda"] and calls.resources["gpu"] == 0)  # the fake Ray has no GPU: CPU trials
    if plan.param("weight_decay"):
        assert module.hp_from_config({"weight_decay": plan.param("weight_decay").low / 5})["weight_decay"] == 0.0 \
            or plan.strategy in ("grid", "manual")


# --------------------------------------------------------------------------- advisor's space YAML

@pytest.mark.parametrize("key", list(PLANS))
def test_space_yaml_round_trips(key: str) -> None:
    plan = plan_for(key)
    text = emit(plan, "yaml", "space.yaml")
    data = yaml.safe_load(text)
    space = Space.model_validate(data)
    assert yaml.safe_load(yaml.safe_dump(space.to_yaml_dict())) == data  # nothing lost
    assert space.strategy == plan.strategy and space.trials == plan.n_configs
    assert space.top_k == plan.top_k and space.seeds_final == plan.seeds_final
    assert space.pruner.type == plan.pruner.type
    assert space.baseline == plan.baseline
    assert list(space.params) == [p.name for p in plan.params]
    for p in plan.params:
        sp = space.params[p.name]
        if p.distribution == "categorical":
            assert sp.type == "categorical" and sp.choices == p.choices
        elif p.by:
            assert sp.by == p.by and sp.ranges == {k: list(v) for k, v in p.ranges.items()}
        else:
            assert (sp.low, sp.high, sp.log, sp.zero) == (p.low, p.high, p.log, p.zero)
            if p.log:
                assert sp.low > 0  # never a log range from 0
        if plan.strategy in ("grid", "manual") and not p.by and p.distribution != "categorical":
            assert sp.choices == p.choices


# --------------------------------------------------------------------------- the command line

def test_emit_writes_and_refuses_to_overwrite(tmp_path) -> None:
    out = tmp_path / "sweep.yaml"
    args = ["plan", "--budget", "50h", "--trial-time", "30m", "--gpus", "1", "--emit", "wandb", "--out", str(out)]
    res = run_cli(*args)
    assert res.code == 0 and out.exists()
    check_wandb(yaml.safe_load(out.read_text()))
    before = out.read_text()
    res = run_cli(*args[:2], "300h", *args[3:])
    assert res.code == 2 and "--force" in res.err and out.read_text() == before
    assert run_cli(*args[:2], "300h", *args[3:], "--force").code == 0
    assert yaml.safe_load(out.read_text())["method"] == "bayes"
    res = run_cli(*args[:-4], "--emit", "yaml", "--out", str(tmp_path / "space.yaml"), "--json")
    assert res.code == 0 and json.loads(res.out)["strategy"] == "bayesian"  # 100 configurations: P104
    Space.model_validate(yaml.safe_load((tmp_path / "space.yaml").read_text()))


def test_emit_never_writes_into_an_input(tmp_path) -> None:
    finder = tmp_path / "lrfind.json"
    finder.write_text(json.dumps({"suggested_lr": 1e-3}))
    before = finder.read_text()
    res = run_cli("plan", "--budget", "50h", "--trial-time", "30m", "--gpus", "1", "--lr-from", str(finder),
                  "--emit", "yaml", "--out", str(finder), "--force")
    assert res.code == 2 and "input" in res.err and finder.read_text() == before


def test_emit_refuses_a_plan_that_says_do_not_tune(tmp_path) -> None:
    res = run_cli("plan", "--budget", "30m", "--trial-time", "2h", "--gpus", "1", "--emit", "optuna",
                  "--out", str(tmp_path / "s.py"))
    assert res.code == 2 and "not to tune" in res.err and not (tmp_path / "s.py").exists()


def test_a_conditional_grid_says_w_and_b_crosses_it_in_the_file_and_in_plans_output(tmp_path) -> None:
    from conftest import run_cli

    out = tmp_path / "sweep.yaml"
    r = run_cli("plan", "--budget", "8h", "--trial-time", "30m", "--epochs", "4", "--params",
                "learning_rate,optimizer", "--emit", "wandb", "--out", out)
    assert r.code == 0, r.err
    text = out.read_text()
    assert "W&B has no conditional grid" in text and "20 learning_rate-optimizer pairs for the 10 planned" in text
    assert "one grid over 'planned'" in " ".join(r.out.split())
    assert len(yaml.safe_load(text)["parameters"]["planned"]["values"]) == 10
    # advisor reads it back as the conditional grid it planned, and its linter finds no grid explosion
    from advisor.ingest.space import load_space

    space = load_space(out).space
    assert space.params["learning_rate"].by == "optimizer"
    assert sum(len(v) for v in space.params["learning_rate"].grid.values()) == 10
    res = run_cli("check", out, "--budget", "8h", "--trial-time", "30m")
    assert "K201" not in res.out and res.code == 0, res.out


def test_the_w_and_b_file_names_the_pruner_phases_and_stop_rule_it_cannot_run() -> None:
    plan = plan_for("bayes-50h-epochs-assumed")
    text = emit(plan, "wandb", "sweep.yaml")
    head = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "hyperband early termination" in head and "Refine phase" in head and "Stop rule" in head


def test_the_scripts_stop_rule_counts_pruned_trials_as_no_gain(tmp_path) -> None:
    """Under heavy pruning most trials are pruned: counting complete trials alone, 'the best has
    not improved for 20 trials' could never fire (emitters report 1.4); audit counts them too."""
    plan = plan_for("bayes-50h-epochs-assumed")
    path = tmp_path / "search_stale.py"
    path.write_text(emit(plan, "optuna", path.name))
    module = load_module(path, path.stem)
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(direction=module.DIRECTION)
    dist = {"x": FloatDistribution(0, 1)}
    study.add_trial(create_trial(params={"x": 0.5}, distributions=dist, value=0.9, state=TrialState.COMPLETE))
    rule = module.StopWhenStale(window=5, min_gain=0.001)
    stopped: list[int] = []
    study.stop = lambda: stopped.append(len(study.trials))  # outside optimize() Optuna refuses stop()
    for i in range(6):
        study.add_trial(create_trial(params={"x": 0.1 * i}, distributions=dist, state=TrialState.PRUNED,
                                     intermediate_values={0: 0.1}))
        rule(study, study.trials[-1])
    assert stopped == [6, 7]  # one complete trial, then 5 pruned ones without a better value: stop


def test_audit_reads_the_zero_choice_as_zero_not_as_the_lower_bound(tmp_path) -> None:
    """The study stores the raw draw below the floor; the trial ran with 0 (its hp): audit reads 0,
    so a best at 0 is no "best at the lower bound, widen downwards" (emitters report 1.7)."""
    plan = plan_for("random-50h")
    path = tmp_path / "search_zero.py"
    path.write_text(emit(plan, "optuna", path.name))
    module = load_module(path, path.stem)
    storage = f"sqlite:///{tmp_path / 'zero.db'}"

    def objective(hp, report):
        return 1.0 - (0.5 if hp["weight_decay"] > 0 else 0.0) - abs(math.log10(hp["learning_rate"]) + 3) / 10

    module.run(objective, storage=storage, phases=("explore",), n_explore=24)
    from advisor.ingest.study import load_study

    table = load_study(storage, plan.name)
    wd = table.trials["params_weight_decay"]
    assert (wd == 0).any() and ((wd == 0) | (wd >= plan.param("weight_decay").low)).all()
    d = table.distributions["weight_decay"]
    assert d.zero and d.low == pytest.approx(plan.param("weight_decay").low)
    best = table.trials.loc[table.trials["value"].idxmax()]
    assert best["params_weight_decay"] == 0.0
    res = run_cli("audit", str(tmp_path / "zero.db"), "--study", plan.name, "--json")
    found = [f for f in json.loads(res.out)["findings"] if "weight_decay" in json.dumps(f)]
    assert not [f for f in found if f["code"] == "A101"], found
