"""Commands that show the search space: ``autopeft adapters`` and ``autopeft space``.

``adapters`` lists the registered families with their parameters (defaults and ranges), task
kinds and architectures. ``space FILE --model M`` checks a space against a model exactly as a
search would (``space.fit_to_model`` on the model's meta-device skeleton: no weights, no
compute) and prints what it will search: the families kept and those excluded with the
reason, the modules each placement choice resolves to, and the number of layers.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from autopeft.cli._output import fail, labelled, out
from autopeft.errors import AutoPeftError
from autopeft.process import configure_process


def _spec_text(spec: Any) -> str:
    # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
    from autopeft.space import ChoiceSpec, RangeSpec

    if isinstance(spec, ChoiceSpec):
        return "{" + ", ".join(str(c) for c in spec.choices) + "}"
    if isinstance(spec, RangeSpec):
        return f"{spec.low}..{spec.high}" + (" (log)" if spec.log else "")
    return str(spec)


def _rule_text(rule: Any) -> str:
    """What values a parameter accepts, for ``autopeft adapters``."""
    if rule is None:
        return ""
    if rule.choices is not None:
        return " [one of " + ", ".join(str(c) for c in rule.choices) + "]"
    bounds = [f">= {rule.minimum:g}" if rule.minimum is not None else "",
              f"<= {rule.maximum:g}" if rule.maximum is not None else "", "integer" if rule.integer else ""]
    return " [" + ", ".join(b for b in bounds if b) + "]" if any(bounds) else ""


def _names_text(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return f"{len(names)}: {shown}" + (f", ... (+{len(names) - limit})" if len(names) > limit else "")


def adapters() -> None:
    """List the adapter families: parameters with defaults and ranges, task kinds, architectures."""
    # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
    from autopeft.adapters import families

    table = Table(title="adapter families", show_lines=True)
    for column in ("family", "parameters = default [accepted values]", "placement", "task kinds", "architectures"):
        table.add_column(column, overflow="fold")
    for name, family in sorted(families().items()):
        params = "\n".join(f"{p} = {_spec_text(spec)}{_rule_text(family.rules.get(p))}"
                            for p, spec in family.defaults.items()) or "-"
        placement = ("layers + roles" if family.uses_roles else "layers (own positions)") if family.uses_placement else "-"
        table.add_row(Text.assemble((name, "bold"), f"\n{family.description}"), params, placement, ", ".join(family.task_kinds),
                      family.architectures)
    out.print(table)


def space(
    file: str = typer.Argument(..., help="A space YAML file or the name of a ready space."),
    model: str = typer.Option(..., "--model", "-m", help="Hub id, local model folder, or 'minilm'."),
    task: str = typer.Option("sequence_classification", "--task", "-t", help="Task kind."),
    num_labels: int = typer.Option(2, help="Number of classes (for the classifier head)."),
) -> None:
    """Validate a space against a model and print what a search would try."""

    configure_process()
    try:
        # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
        from autopeft.adapters.fit import fit_to_model
        from autopeft.config import ModelConfig
        from autopeft.model.loading import resolve_location
        from autopeft.space import TRAINING_KEYS, load_space
        from autopeft.tasks import get_task

        kind = get_task(task)
        loaded = load_space(file)
        location = resolve_location(model)
        spec = ModelConfig(name_or_path=model)
        structure = kind.structure(spec, location, [str(i) for i in range(num_labels)])
        fit = fit_to_model(loaded, structure, task)
    except AutoPeftError as exc:
        fail(exc)
        return

    out.print(Text.assemble((model, "bold"), f" ({structure.architecture}): {structure.num_layers} layers, roles "
                            f"{', '.join(structure.roles) or 'none'}"), highlight=False)
    families = Table(title="families")
    families.add_column("family")
    families.add_column("status")
    for name in fit.kept:
        families.add_row(name, "kept")
    for name, reason in fit.excluded.items():
        families.add_row(name, labelled("excluded", "yellow", reason))
    out.print(families)
    for what, excluded in (("roles", fit.excluded_roles), ("layers", fit.excluded_layers)):
        for choice, reason in excluded.items():  # placement choices this architecture cannot take
            out.print(Text.assemble(f"placement.{what} {choice}: ", labelled("excluded", "yellow", reason)),
                      highlight=False, soft_wrap=True)
    if fit.placements:
        placements = Table(title="placements")
        for column in ("layers", "roles", "modules"):
            placements.add_column(column, overflow="fold")
        for layers, roles, names in fit.placements:
            label = f"{layers} (one searched bit per layer)" if layers == "mask" else str(layers)
            placements.add_row(label, str(roles), _names_text(names))
        out.print(placements)
    shared = {k: getattr(loaded, k) for k in TRAINING_KEYS}
    out.print("training: " + ", ".join(f"{k} = {_spec_text(v)}" for k, v in shared.items()), highlight=False)
    for name in fit.kept:
        own = loaded.training_overrides(name)
        if own:
            out.print(f"training of {name}: " + ", ".join(f"{k} = {_spec_text(v)}" for k, v in own.items()),
                      highlight=False)


def register(app: typer.Typer) -> None:
    app.command("adapters")(adapters)
    app.command("space")(space)


__all__: list[str] = ["register"]
