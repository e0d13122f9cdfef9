"""The Markdown report (--report)."""

from __future__ import annotations

from advisor.advice.diagnosis import DiagnoseReport
from advisor.render.common import fmt_value


def render(report: DiagnoseReport) -> str:
    out = ["# advisor diagnosis", ""]
    for r in report.runs:
        out += [f"## `{r.run}`", "", f"{r.format} log, {r.epochs} epochs"
                + (f", {r.steps} steps" if r.steps else "") + ".", ""]
        for f in r.diagnoses + r.notes:
            label = f" — {f.label}" if f.label else ""
            out += [f"### {f.severity.upper()} {f.code} `{f.name}`{label}", "", f.message, ""]
            if f.evidence:
                out += ["| fact | value | unit |", "|---|---|---|"]
                out += [f"| {e.fact} | {fmt_value(e.value)} | {e.unit} |" for e in f.evidence]
                out.append("")
            out += [f"**Advice.** {f.advice}", "", f"*Source: {f.source}*", ""]
        if r.tune_first:
            out += ["### What to tune first", ""]
            out += [f"{i}. **{t.param}** (tier {t.tier}, {t.share:.0%} of the effort; {', '.join(t.because)})"
                    for i, t in enumerate(r.tune_first, 1)]
            out.append("")
    if report.comparison:
        out += ["## Comparison", "", "| run | diagnoses | best epoch | best val loss | best val metric |",
                "|---|---|---|---|---|"]
        for row in report.comparison:
            star = " ★" if row.run == report.best_run else ""
            out.append(f"| `{row.run}`{star} | {', '.join(row.labels)} | "
                       + " | ".join("-" if v is None else fmt_value(v)
                                    for v in (row.best_val_epoch, row.val_loss_best, row.best_val_metric)) + " |")
        out.append("")
    return "\n".join(out)
