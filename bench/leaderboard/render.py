"""Tables as files: Markdown (best **bold**, second <u>underlined</u>), LaTeX (\\textbf / \\underline), a wide CSV
in the layout of `leaderboards/paper/` (means) and a long CSV (mean, std, seeds, p vs DPO, minimal detectable
difference vs DPO, mark). The caption of a metrics table gives the range of its cells' minimal detectable
differences: the gaps the profile can resolve.

Every row names the ranking protocol its records used; rows whose records give identical target ranks (copies of
another row, e.g. DMPO with one negative and DPO) are named in the caption and the long CSV (``same_ranks_as``).
A value prints as ``mean`` with one seed and ``mean ± std`` with several, followed by † when a paired test against
DPO on the same test samples gives p < 0.05 (see `significance`); ``–`` marks a missing record.
"""
from __future__ import annotations

import csv
import io

from bench.leaderboard.tables import ALPHA, Table, Value, columns_of

DASH = "–"


def number(value: Value, kind: str) -> str:
    if value.mean is None:
        return DASH
    digits = 1 if kind == "seconds" else 2
    text = f"{value.mean:.{digits}f}"
    if value.std is not None:
        text += f" ± {value.std:.{digits}f}"
    if value.p_vs_dpo is not None and value.p_vs_dpo < ALPHA:
        text += " †"
    return text


def _marked_md(value: Value, kind: str) -> str:
    text = number(value, kind)
    return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(value.mark, text)


def _latex_escape(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"),
                 ("$", "\\$"), ("{", "\\{"), ("}", "\\}")):
        text = text.replace(a, b)
    return text


def _marked_tex(value: Value, kind: str) -> str:
    text = number(value, kind).replace(" ± ", " $\\pm$ ").replace(" †", "$^\\dagger$").replace(DASH, "--")
    return {"best": f"\\textbf{{{text}}}", "second": f"\\underline{{{text}}}"}.get(value.mark, text)


def caption(table: Table) -> str:
    spec = table.spec
    seeds = sorted({r["seed"] for r in table.records})
    protocols = sorted({str(r.get("protocol")) for r in table.records})
    devices = sorted({str(r.get("environment", {}).get("device")) for r in table.records})
    parts = [spec.title + f" -- profile `{table.profile}`",
             f"seeds {', '.join(map(str, seeds)) or 'none found'}; ranking protocol {', '.join(protocols) or '?'}"]
    if spec.kind == "seconds":
        parts.append(f"seconds per epoch of preference training, median over epochs; device: {'; '.join(devices)}")
    elif spec.kind == "metrics":
        parts.append("values in %; best **bold**, second <u>underlined</u> among the paper's rows; "
                     "† p < 0.05 against DPO (paired, same test samples)")
        resolution = mde_note(table)
        if resolution:
            parts.append(resolution)
    copies = table.identical_rows()
    if copies:
        parts.append("rows with identical target ranks (copies): " + ", ".join(
            f"{a} = {b} (column {c + 1})" for a, b, c in copies))
    note = causal_note(table)
    if note:
        parts.append(note)
    if any(r.extra for r in table.rows):
        parts.append("rows after the paper's are references not in the published table: "
                     + ", ".join(r.label for r in table.rows if r.extra))
    return ". ".join(parts) + "."


def causal_note(table: Table) -> str | None:
    """What the CausalDPO rows are in this suite: with a policy that does not see the environment, Eq. 6's backdoor
    adjustment over soft assignments is the batch mean of a mean-reduced loss (an identity kept by a test of
    `methods.causal`), so CausalDPO = DPO + lambda * MMD^2; where its settings differ from the paper's; how many rows
    its environments were inferred from (recorded since the regularizer covers the whole optimizer step)."""
    labels = [r.label for r in table.rows if r.method.startswith("causaldpo")]
    if not labels:
        return None
    causal = [r for r in table.records if str(r.get("method", "")).startswith("causaldpo")]
    betas = sorted({r["hyperparameters"].get("beta") for r in causal if "beta" in r.get("hyperparameters", {})})
    clustered = sorted({round(r["method_stats"]["clustered_per_step"]) for r in causal
                        if r.get("method_stats", {}).get("clustered_per_step")})
    text = (f"{', '.join(dict.fromkeys(labels))} (CausalDPO): Eq. 6's backdoor adjustment over soft assignments equals "
            "the batch mean of the DPO loss here (the policy does not see the environment), so CausalDPO = DPO + "
            "lambda * MMD^2 across pseudo-environments inferred by DBSCAN over each optimizer step's whole batch")
    if clustered:
        text += f" ({'/'.join(map(str, clustered))} rows per clustering)"
    if len(betas) > 1:
        text += f"; beta {'/'.join(f'{b:g}' for b in betas)} by row"
    elif betas:
        text += (f"; beta {'/'.join(f'{b:g}' for b in betas)}, DPO's and every baseline's value (the released "
                 "CausalDPO scripts use 0.1 too), not the beta = 2 that the paper's Figure 3 finds best on Book-Crossing for "
                 "CausalDPO alone: the rows then differ from DPO only by the regularizer")
    return text


def mde_note(table: Table) -> str | None:
    """Which differences against DPO the table can resolve: the range of its cells' minimal detectable differences."""
    by_metric = {}
    for (_, _, metric), v in table.values.items():
        if v.mde_vs_dpo is not None:
            by_metric.setdefault(metric, []).append(v.mde_vs_dpo)
    if not by_metric:
        return None
    spans = [f"{m} {min(xs):.2f}-{max(xs):.2f} (median {sorted(xs)[len(xs) // 2]:.2f})" for m, xs in by_metric.items()]
    return ("minimal detectable difference against DPO (80% power, alpha 0.05, paired over samples and seeds), in "
            "points: " + "; ".join(spans) + "; smaller gaps are not resolved by this profile")


def markdown(table: Table) -> str:
    cols = columns_of(table.spec)
    lines = [f"### {table.spec.title}", "", caption(table), ""]
    lines.append("Columns: " + "; ".join(f"{i + 1}: {table.column_label(i)}" for i in range(len(table.datasets))))
    lines.append("")
    lines.append("| Method | Protocol | " + " | ".join(f"{c + 1}: {m}" for c, _, m in cols) + " |")
    lines.append("|---|---|" + "---:|" * len(cols))
    for row in table.rows:
        label = f"*{row.label}*" if row.extra else row.label
        cells = [_marked_md(table.value(row.label, c, m), table.spec.kind) for c, _, m in cols]
        lines.append(f"| {label} | {table.protocol(row.label) or DASH} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latex(table: Table) -> str:
    spec, cols = table.spec, columns_of(table.spec)
    metrics = len(spec.metrics)
    text = _latex_escape(caption(table).replace("**", "").replace("`", ""))
    out = ["\\begin{table}[t]", "\\centering", f"\\caption{{{text}}}",
           f"\\begin{{tabular}}{{l{'c' * len(cols)}}}", "\\toprule"]
    groups = " & ".join(f"\\multicolumn{{{metrics}}}{{c}}{{{_latex_escape(table.column_label(i))}}}"
                        for i in range(len(table.datasets)))
    out.append(f"Method & {groups} \\\\")
    out.append("& " + " & ".join(_latex_escape(m) for _, _, m in cols) + " \\\\")
    out.append("\\midrule")
    first_extra = True
    for row in table.rows:
        if row.extra and first_extra:
            out.append("\\midrule")
            first_extra = False
        cells = [_marked_tex(table.value(row.label, c, m), spec.kind) for c, _, m in cols]
        out.append(_latex_escape(row.label) + " & " + " & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"


def wide_csv(table: Table) -> str:
    """The paper's layout: dataset, shift, metric, one column per row label; means, blank where missing."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "shift", "metric", *[r.label for r in table.rows]])
    for c, col, metric in columns_of(table.spec):
        values = [table.value(r.label, c, metric).mean for r in table.rows]
        w.writerow([table.datasets[c], col.shift, metric, *["" if v is None else f"{v:.6g}" for v in values]])
    return buf.getvalue()


def long_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "dataset", "shift", "paper_dataset", "metric", "row", "method", "backbone", "overrides",
                "protocol", "mean", "std", "seeds", "p_vs_dpo", "mde_vs_dpo", "mark", "in_paper", "same_ranks_as"])
    copies = {(a, c): b for a, b, c in table.identical_rows()}
    for c, col, metric in columns_of(table.spec):
        for row in table.rows:
            v = table.value(row.label, c, metric)
            w.writerow([table.spec.name, table.datasets[c], col.shift, col.paper_dataset, metric, row.label,
                        row.method, row.backbone or "", " ".join(row.overrides), table.protocol(row.label),
                        "" if v.mean is None else f"{v.mean:.6g}", "" if v.std is None else f"{v.std:.6g}",
                        " ".join(map(str, v.seeds)), "" if v.p_vs_dpo is None else f"{v.p_vs_dpo:.4g}",
                        "" if v.mde_vs_dpo is None else f"{v.mde_vs_dpo:.4g}", v.mark or "", int(not row.extra),
                        copies.get((row.label, c), "")])
    return buf.getvalue()
