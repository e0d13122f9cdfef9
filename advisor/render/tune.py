"""`advisor tune`'s output: the terminal summary, report.md and report.html (one self-contained
file: the plots are PNGs embedded as data URIs, the style inline), from the summary document of
advisor/act/tune.py. matplotlib draws the plots when it is installed; without it the reports
say so and keep their text.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape

from advisor.units import format_seconds


# --------------------------------------------------------------------------- numbers in words

def _num(v: Optional[float], digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}"


def _pm(mean: Optional[float], std: Optional[float], n: Optional[int]) -> str:
    if mean is None:
        return "-"
    return f"{_num(mean)} ± {_num(std, 2)} (n={n})" if std is not None and n and n > 1 else f"{_num(mean)} (n={n or 1})"


def _dur(seconds: Optional[float]) -> str:
    return "-" if seconds is None else format_seconds(seconds)


def _params(params: Optional[dict[str, Any]]) -> str:
    if not params:
        return "-"
    return ", ".join(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in params.items()
                     if k not in ("seed", "epochs"))


def headline(s: dict[str, Any]) -> str:
    if s.get("stopped"):
        return f"stopped at {s['stopped']['step']}: {s['stopped']['message']}"
    b, f, imp = s["baseline"], s.get("final"), s.get("improvement")
    if not f:
        return "no tuned result (the search did not finish)"
    text = f"tuned {s['metric']} {_pm(f['mean'], f['std'], f['n'])} vs baseline {_pm(b['mean'], b['std'], b['n'])}"
    if imp:
        sd = f", {imp['in_baseline_std']:.1f} baseline std" if imp.get("in_baseline_std") is not None else ""
        text += (f": {'+' if imp['delta'] >= 0 else ''}{_num(imp['delta'], 3)} "
                 f"({'better' if imp['better'] else 'not better'}{sd})")
    return text


# --------------------------------------------------------------------------- terminal

def render(s: dict[str, Any], console: Console) -> None:
    colour = "red" if s.get("stopped") else "green"
    console.rule(f"[bold]advisor tune {escape(s['task'])}[/]")
    console.print(f"[bold {colour}]{escape(headline(s))}[/]")
    if s.get("stopped") and s["stopped"].get("advice"):
        console.print(f"  fix: {escape(s['stopped']['advice'])}")
    if s.get("final"):
        console.print(f"best: {escape(_params(s['final']['params']))}")
    bud = s["budget"]
    console.print(f"budget {_dur(bud['budget_s'])}, used {_dur(bud['used_s'])}"
                  + ("" if bud["within"] else " [yellow](over)[/]") + f", on {escape(str(s.get('device')))}")
    for ph in s["phases"]:
        allotted = f" of {_dur(ph['allotted_s'])}" if ph.get("allotted_s") else ""
        note = f" ({escape(ph['note'])})" if ph.get("note") else ""
        console.print(f"  {ph['name']:<9} {ph['status']:<8} {_dur(ph['seconds']):>6}{allotted}, "
                      f"{ph['epochs']:g} epochs{note}")
    for line in s.get("next") or []:
        console.print(f"next: {escape(line)}")
    files = ["report.html", "report.md"] + (["best.yaml"] if s.get("final") else []) + ["tune.json"]
    console.print(f"[dim]{escape(s['out'])}: {', '.join(files)}[/]")


# --------------------------------------------------------------------------- plots

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(s: dict[str, Any], out: Path) -> dict[str, str]:
    """name -> base64 PNG; empty without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    found: dict[str, str] = {}
    metric = s.get("metric") or "metric"
    b, f = s["baseline"], s.get("final")

    if f and b.get("values"):  # baseline vs tuned, every seed and the mean ± std
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for i, (name, vals, mean, std) in enumerate((("baseline", b["values"], b["mean"], b["std"]),
                                                     ("tuned", f["values"], f["mean"], f["std"]))):
            ok = [v for v in vals if v is not None]
            ax.scatter([i] * len(ok), ok, color="0.5", s=14, zorder=3)
            if mean is not None:
                ax.errorbar([i], [mean], yerr=[std or 0.0], fmt="o", color=f"C{i}", capsize=8, ms=8, zorder=4)
        ax.set_xticks([0, 1], ["baseline", "tuned"])
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylabel(metric)
        ax.set_title("final: mean ± std over seeds", fontsize=9)
        fig.tight_layout()
        found["compare"] = _png(fig)

    curves = [("baseline", b.get("curve")), ("tuned (best, first seed)", s.get("best_curve"))]
    curves = [(n, c) for n, c in curves if c and c.get("val")]
    if curves:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
        for i, (name, c) in enumerate(curves):
            xs = range(1, len(c["val"]) + 1)
            ax1.plot(xs, [v if v is not None else float("nan") for v in c["train_loss"]], color=f"C{i}", label=name)
            ax2.plot(xs, [v if v is not None else float("nan") for v in c["val"]], color=f"C{i}", label=name)
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("training loss")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel(metric)
        ax1.legend(fontsize=7)
        fig.tight_layout()
        found["curves"] = _png(fig)

    hist = [h for h in s.get("history") or [] if h.get("value") is not None]
    if hist:
        sign = 1.0 if s.get("direction") == "maximize" else -1.0
        fig, ax = plt.subplots(figsize=(9, 3.2))
        done = [h for h in hist if h["state"] == "complete" and not h["baseline"]]
        pruned = [h for h in hist if h["state"] != "complete"]
        ax.scatter([h["number"] for h in done], [h["value"] for h in done], s=16, color="C0", label="complete")
        ax.scatter([h["number"] for h in pruned], [h["value"] for h in pruned], s=16, marker="x", color="0.6",
                   label="pruned (last value)")
        base = [h for h in hist if h["baseline"]]
        if base:
            ax.scatter([h["number"] for h in base], [h["value"] for h in base], s=50, marker="*", color="C3",
                       label="baseline", zorder=4)
        best, xs, ys = None, [], []
        for h in sorted(hist, key=lambda h: h["number"]):
            if h["state"] == "complete" and (best is None or sign * h["value"] > sign * best):
                best = h["value"]
            if best is not None:
                xs.append(h["number"])
                ys.append(best)
        ax.step(xs, ys, where="post", color="C2", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
        fig.tight_layout()
        found["history"] = _png(fig)

    imp = s.get("importance") or {}
    if imp:
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(imp)))
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="C0")
        ax.set_xlabel("importance (fANOVA, share of the variance)")
        fig.tight_layout()
        found["importance"] = _png(fig)

    lf = s.get("lr_find") or {}
    png = out / lf["plot"] if lf.get("plot") else None
    if png is not None and png.is_file():
        found["lr_find"] = base64.b64encode(png.read_bytes()).decode("ascii")
    return found


# --------------------------------------------------------------------------- the sections, once

def sections(s: dict[str, Any]) -> list[tuple[str, list[str], Optional[str]]]:
    """(title, paragraphs of plain text, plot name) in report order; both reports read these."""
    out: list[tuple[str, list[str], Optional[str]]] = []
    b, f = s["baseline"], s.get("final")
    lines = [headline(s)]
    if s.get("stopped") and s["stopped"].get("advice"):
        lines.append(f"What to fix: {s['stopped']['advice']}")
    if f:
        lines.append(f"Best configuration: {_params(f['params'])} (best.yaml).")
    bud = s["budget"]
    lines.append(f"Budget {_dur(bud['budget_s'])}, used {_dur(bud['used_s'])}"
                 f"{'' if bud['within'] else ' (over the budget)'}, on {s.get('device')}.")
    out.append(("Result", lines, "compare"))
    rows = [f"{p['name']}: {p['status']}, {_dur(p['seconds'])}"
            + (f" of {_dur(p['allotted_s'])} allotted" if p.get("allotted_s") else "")
            + f", {p['epochs']:g} epochs" + (f" ({p['note']})" if p.get("note") else "") for p in s["phases"]]
    out.append(("Phases and budget", rows, None))
    diag = b.get("diagnosis") or {}
    lines = [f"Baseline ({_params(b.get('params'))}): {s['metric']} {_pm(b['mean'], b['std'], b['n'])}; "
             f"one run took {_dur(b.get('seconds'))}."]
    lines.append(f"Diagnosis of its curve (baseline.csv): {', '.join(diag.get('labels') or []) or 'no finding'}.")
    lines += [f"{x['code']} {x['severity']}: {x['message']}" for x in (diag.get("findings") or [])[:4]]
    out.append(("Baseline", lines, None))
    lf = s.get("lr_find")
    if lf:
        rng = lf.get("range")
        out.append(("LR range test", [
            f"Suggested learning rate {_num(lf.get('suggested_lr'), 3)}"
            + (f", search range {_num(rng[0], 3)} .. {_num(rng[1], 3)}" if rng else "")
            + f" ({lf.get('verdict')}, confidence {_num(lf.get('confidence'), 2)}, {lf.get('repeats')} range test(s), "
            f"{lf.get('optimizer')}).", lf.get("message") or ""], "lr_find"))
    plan = s.get("plan")
    if plan:
        out.append(("Plan", [f"{plan['strategy']} search over {', '.join(plan['params'])}: {plan['trials']} trials, "
                             f"pruner {plan['pruner']}, the best {plan['top_k']} re-run with {plan['seeds_final']} "
                             f"seeds (plan.yaml, plan.json)."]
                    + [f"check {c['code']} {c['severity']}: {c['message']}" for c in s.get("check") or []], None))
    sr = s.get("search")
    if sr:
        t = sr.get("trials") or {}
        out.append(("Search history", [
            f"Study {sr.get('study')} in {sr.get('storage')}: {t.get('complete', 0)} complete, {t.get('pruned', 0)} "
            f"pruned, {t.get('fail', 0)} failed; stopped by {sr.get('stopped_by')}; pruning saved "
            f"{sr.get('epochs_saved_by_pruning', 0)} epochs of {sr.get('epochs_search', 0)} trained.",
            f"optuna-dashboard {sr.get('storage')} shows it."], "history"))
    if s.get("importance"):
        out.append(("Parameter importance", [", ".join(f"{k} {v:.0%}" for k, v in s["importance"].items())],
                    "importance"))
    if f:
        best = s.get("best") or {}
        d = best.get("diagnosis") or {}
        lines = [f"Final seeds: {', '.join(_num(v) for v in f['values'])}; in the search: {_num(f.get('search_value'))}."]
        if d:
            lines.append(f"Diagnosis of its curve (best.csv): {', '.join(d.get('labels') or []) or 'no finding'}.")
            lines += [f"{x['code']} {x['severity']}: {x['message']}" for x in (d.get("findings") or [])[:4]]
        out.append(("Best configuration's training", lines, "curves"))
    audit = s.get("audit") or []
    out.append(("Audit of the search", [f"{a.get('code')} {a.get('severity')}: {a.get('message')}" for a in audit]
                or ["No red flag."], None))
    out.append(("What to do next", list(s.get("next") or []) or ["Use best.yaml."], None))
    return out


def markdown(s: dict[str, Any], files: dict[str, str]) -> str:
    """report.md: the same sections, the plots as PNG files beside it (`files`: plot -> file name)."""
    text = [f"# advisor tune: {s['task']}", ""]
    for title, lines, plot in sections(s):
        text += [f"## {title}", ""]
        text += [f"- {ln}" for ln in lines if ln]
        if plot and plot in files:
            text += ["", f"![{title}]({files[plot]})"]
        text.append("")
    return "\n".join(text)


STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.6em}img{max-width:100%;height:auto;display:block;margin:.6em 0}
.head{font-size:1.1em;font-weight:600}ul{padding-left:1.2em}li{margin:.15em 0}.stopped{color:#b00}
footer{color:#888;font-size:.85em;margin-top:2em}"""


def to_html(s: dict[str, Any], images: dict[str, str]) -> str:
    e = html.escape
    body = [f"<h1>advisor tune: {e(s['task'])}</h1>"]
    for i, (title, lines, plot) in enumerate(sections(s)):
        body.append(f"<h2>{e(title)}</h2>")
        if i == 0:
            cls = "head stopped" if s.get("stopped") else "head"
            body.append(f'<p class="{cls}">{e(lines[0])}</p>')
            lines = lines[1:]
        if lines:
            body.append("<ul>" + "".join(f"<li>{e(ln)}</li>" for ln in lines if ln) + "</ul>")
        if plot and plot in images:
            body.append(f'<img alt="{e(title)}" src="data:image/png;base64,{images[plot]}">')
    if not images:
        body.append("<p>No plots: matplotlib is not installed (pip install 'advisor[plot]').</p>")
    body.append(f"<footer>{e(s['out'])}: tune.json holds every figure of this report.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>advisor tune: {e(s['task'])}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_reports(s: dict[str, Any], out: Path) -> None:
    images = plots(s, out)
    files = {}
    for name, data in images.items():
        files[name] = "lr_find.png" if name == "lr_find" else f"plot_{name}.png"
        if name != "lr_find":
            (out / files[name]).write_bytes(base64.b64decode(data))
    (out / "report.md").write_text(markdown(s, files), encoding="utf-8")
    (out / "report.html").write_text(to_html(s, images), encoding="utf-8")


__all__ = ["render", "write_reports", "headline", "to_html", "markdown"]
