"""The rich summary of what a dataset read gave: counts per split and label, conversions, files left out."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from slsg.data.layouts import Category


def counts_table(categories: list[Category]) -> Table:
    table = Table(title="dataset", show_lines=False)
    for col in ("category", "layout", "split", "label", "kind", "images", "with masks"):
        table.add_column(col, justify="right" if col in ("images", "with masks") else "left", no_wrap=True)
    for cat in categories:
        per: Counter = Counter()
        masked: Counter = Counter()
        kinds = {}
        for s in cat.samples:
            per[(s.split, s.label)] += 1
            masked[(s.split, s.label)] += bool(s.masks)
            kinds[(s.split, s.label)] = s.kind
        for (split, label), n in per.items():
            table.add_row(cat.name, cat.layout, split, label, kinds[(split, label)], str(n),
                          str(masked[(split, label)]) if label != "good" else "-")
    return table


def issues_table(categories: list[Category], limit: int = 50) -> Table | None:
    rows = [(c.name, i) for c in categories for i in c.report.issues]
    rows += [(c.name, p, note) for c in categories for p, note in c.report.converted]
    if not rows:
        return None
    table = Table(title="files converted or left out")
    for col in ("category", "file", "what happened", "what to do"):
        table.add_column(col, overflow="fold")
    for row in rows[:limit]:
        if len(row) == 3:
            name, path, note = row
            table.add_row(name, str(path), f"converted: {note}", "-")
        else:
            name, issue = row
            table.add_row(name, str(issue.path), f"{issue.action}: {issue.problem}", issue.fix)
    if len(rows) > limit:
        table.caption = f"... and {len(rows) - limit} more"
    return table


def print_summary(categories: list[Category], console: Console | None = None) -> None:
    console = console or Console()
    console.print(counts_table(categories))
    issues = issues_table(categories)
    if issues is not None:
        console.print(issues)
