"""Paper-vs-ours tables from a ``results.json`` dict (text for the terminal, markdown for files).

Everything here reads the results dict alone (it carries the paper's numbers,
the metric formats and the table layout), so a README section can be rebuilt
from ``results/*/results.json`` without the table files.
"""

from __future__ import annotations


def fmt_seconds(s) -> str:
    if s is None:
        return "—"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _metric_fmt(m: dict, v) -> str:
    return "—" if v is None else f"{v:.{int(m.get('digits', 4))}f}"


def _delta_fmt(m: dict, ours, paper) -> str:
    if ours is None or paper is None:
        return "—"
    return f"{ours - paper:+.{int(m.get('digits', 4))}f}"


def cell_ids(results: dict) -> list[str]:
    """Every cell of the table, in the table's order."""
    return list(results.get("paper", {}))


def rows(results: dict) -> list[dict]:
    """One row per cell: id, row/col labels, per metric (paper, ours), wall seconds, machine label, status."""
    out = []
    layout = results.get("layout", {})
    for cid in cell_ids(results):
        rec = results.get("cells", {}).get(cid, {})
        ours = results.get("metrics", {}).get(cid)
        status = "done" if ours is not None else ("failed" if "error" in rec else "not run")
        out.append({
            "cell": cid,
            "row": layout.get(cid, {}).get("row", cid),
            "col": layout.get(cid, {}).get("col", ""),
            "paper": results["paper"][cid],
            "ours": ours or {},
            "wall_seconds": rec.get("wall_seconds") if ours is not None else None,
            "machine": (rec.get("machine") or {}).get("label") if ours is not None else None,
            "status": status,
            "note": results.get("paper_notes", {}).get(cid),
        })
    return out


def text_table(results: dict, cells: list[str] | None = None) -> str:
    """Aligned plain-text comparison: cell | paper / ours / delta per metric | wall time."""
    metrics = results["metric_info"]
    header = ["cell"]
    for m in metrics:
        header += [f"{m['label']} paper", "ours", "Δ"]
    header += ["time", "status"]
    body = []
    for r in rows(results):
        if cells is not None and r["cell"] not in cells:
            continue
        line = [r["cell"] + (" *" if r["note"] else "")]
        for m in metrics:
            p, o = r["paper"].get(m["name"]), r["ours"].get(m["name"])
            line += [_metric_fmt(m, p), _metric_fmt(m, o), _delta_fmt(m, o, p)]
        line += [fmt_seconds(r["wall_seconds"]), r["status"]]
        body.append(line)
    widths = [max(len(str(x[i])) for x in [header] + body) for i in range(len(header))]
    fmt = lambda xs: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w) for i, (x, w) in enumerate(zip(xs, widths)))
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(b) for b in body]
    if any(r["note"] for r in rows(results) if cells is None or r["cell"] in cells):
        lines.append("* paper number with a note (see results.md)")
    return "\n".join(lines)


def _md_row(xs) -> str:
    return "| " + " | ".join(str(x) for x in xs) + " |"


def markdown_table(results: dict, *, machine: bool = True) -> str:
    """One markdown row per cell: paper, ours and delta per metric, wall time, machine."""
    metrics = results["metric_info"]
    header = ["cell"]
    for m in metrics:
        header += [f"{m['label']} paper", f"{m['label']} ours", "Δ"]
    header += ["wall time"] + (["machine"] if machine else [])
    lines = [_md_row(header), _md_row(["---"] + ["---:"] * (len(header) - 1 - machine) + (["---"] if machine else []))]
    for r in rows(results):
        line = [f"`{r['cell']}`" + (" \\*" if r["note"] else "")]
        for m in metrics:
            p, o = r["paper"].get(m["name"]), r["ours"].get(m["name"])
            line += [_metric_fmt(m, p), _metric_fmt(m, o) if r["status"] == "done" else r["status"], _delta_fmt(m, o, p)]
        line += [fmt_seconds(r["wall_seconds"])] + ([r["machine"] or "—"] if machine else [])
        lines.append(_md_row(line))
    return "\n".join(lines)


def markdown_grid(results: dict) -> str:
    """The paper's layout (rows x columns), each entry ``paper / ours`` (metrics joined by ``·``)."""
    rs = rows(results)
    row_names = list(dict.fromkeys(r["row"] for r in rs))
    col_names = list(dict.fromkeys(r["col"] for r in rs))
    at = {(r["row"], r["col"]): r for r in rs}
    metrics = results["metric_info"]
    label = " · ".join(m["label"] for m in metrics)
    lines = [_md_row([f"paper / ours ({label})"] + col_names), _md_row(["---"] + ["---:"] * len(col_names))]
    for rn in row_names:
        line = [rn]
        for cn in col_names:
            r = at.get((rn, cn))
            if r is None:
                line.append("")
                continue
            p = " · ".join(_metric_fmt(m, r["paper"].get(m["name"])) for m in metrics)
            o = " · ".join(_metric_fmt(m, r["ours"].get(m["name"])) for m in metrics) if r["status"] == "done" else "—"
            line.append(f"{p} / {o}")
        lines.append(_md_row(line))
    return "\n".join(lines)


def machines(results: dict) -> list[str]:
    """The distinct machine labels the done cells ran on."""
    labels = []
    for cid, rec in results.get("cells", {}).items():
        lab = (rec.get("machine") or {}).get("label")
        if cid in results.get("metrics", {}) and lab and lab not in labels:
            labels.append(lab)
    return labels


def results_markdown(results: dict) -> str:
    """The ``results.md`` of one table's output directory."""
    ref = results.get("reference", {})
    done = len(results.get("metrics", {}))
    n = len(results.get("paper", {}))
    out = [f"# {results['table']}{' (quick smoke run)' if results.get('quick') else ''}", "", results.get("description", ""), ""]
    if ref:
        out += [f"Source: {ref.get('citation', '')}, {ref.get('table', '')}" + (f" <{ref['url']}>" if ref.get("url") else ""), ""]
    if results.get("quick"):
        out += ["**Quick mode**: a few epochs per cell to check the pipeline runs; the numbers are not a reproduction.", ""]
    out += [f"{done} of {n} cells done; {fmt_seconds(results.get('wall_seconds', 0))} of compute in all. "
            f"Reproduce with `{results.get('command', 'conehier reproduce ' + results['table'])}`.", ""]
    out += ["## Paper vs ours", "", markdown_table(results), "", "## In the paper's layout", "", markdown_grid(results), ""]
    notes = results.get("paper_notes", {})
    if notes:
        out += ["\\* " + "; ".join(f"`{c}`: {t}" for c, t in notes.items()), ""]
    failed = {c: r["error"] for c, r in results.get("cells", {}).items() if "error" in r and c not in results.get("metrics", {})}
    if failed:
        out += ["## Failed cells", ""] + [f"- `{c}`: {e}" for c, e in failed.items()] + [""]
    if results.get("notes"):
        out += ["## Protocol", ""] + [f"- {t}" for t in results["notes"]] + [""]
    ms = machines(results)
    if ms:
        out += ["## Machines", ""] + [f"- {m}" for m in ms] + [""]
    return "\n".join(out)
