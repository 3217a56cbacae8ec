"""Where adapters go: module roles and layer indices, detected from the model's structure.

The model is scanned once for adapter-capable leaves (``nn.Linear`` and GPT-2 style
``Conv1D``). Each leaf inside a stack of transformer blocks (``<stack>.<index>.<rest>``) gets
its layer index and a role read from ``<rest>`` (``attention.self.query`` is a query,
``self_attn.o_proj`` an attention output, ``mlp.down_proj`` an MLP down projection, ...). The
rules cover BERT, RoBERTa, DeBERTa-v2, DistilBERT, GPT-2, Llama/Mistral/Qwen2/Gemma, T5 and ViT
naming; leaves no rule knows still take part in ``all-linear``.

A placement (layer selector + roles) resolves to the exact module names, which the adapter
builders hand to peft as an anchored regex, so nothing outside the selection gets an adapter
(peft's suffix matching would put an ``output.dense`` adapter on ``attention.output.dense``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from autopeft.errors import SpaceError

#: Role rules, first match wins; matched against the path inside a transformer block.
_ROLE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (role, re.compile(pattern))
    for role, pattern in (
        ("qkv", r"(^|\.)(c_attn|qkv_proj|query_key_value|Wqkv|qkv)$"),
        ("query", r"(^|\.)(query|q_proj|q_lin|q|query_proj)$"),
        ("key", r"(^|\.)(key|k_proj|k_lin|k|key_proj)$"),
        ("value", r"(^|\.)(value|v_proj|v_lin|v|value_proj)$"),
        (
            "attention_output",
            r"(^|\.)(attention\.output\.dense|attn\.c_proj|o_proj|out_lin|out_proj|"
            r"SelfAttention\.o|EncDecAttention\.o|self_attn\.dense|attention\.dense)$",
        ),
        ("mlp_gate", r"(^|\.)(gate_proj|wi_0|w1)$"),
        ("mlp_up", r"(^|\.)(intermediate\.dense|up_proj|lin1|c_fc|wi|wi_1|fc1|dense_h_to_4h|w3)$"),
        ("mlp_down", r"(^|\.)(output\.dense|down_proj|lin2|mlp\.c_proj|wo|fc2|dense_4h_to_h|w2)$"),
    )
)

#: Single roles, in display order.
ROLES: tuple[str, ...] = tuple(role for role, _ in _ROLE_RULES)

#: Shorthands that stand for several roles.
ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("qkv", "query", "key", "value", "attention_output"),
    "mlp": ("mlp_gate", "mlp_up", "mlp_down"),
}
ALL_LINEAR = "all-linear"

_STACK = re.compile(r"^(?P<stack>.+?)\.(?P<index>\d+)\.(?P<rest>.+)$")


@dataclass(frozen=True)
class Leaf:
    """One adapter-capable module of the model."""

    name: str
    role: str | None
    layer: int | None
    stack: str | None


@dataclass
class ModelStructure:
    """The adapter-capable leaves of a model and its depth."""

    leaves: list[Leaf]
    num_layers: int
    stacks: dict[str, int] = field(default_factory=dict)

    @property
    def roles(self) -> list[str]:
        present = {leaf.role for leaf in self.leaves if leaf.role}
        return [role for role in ROLES if role in present]

    def role_examples(self) -> dict[str, str]:
        """One module-name suffix per role present, for error messages and ``autopeft space``."""
        out: dict[str, str] = {}
        for leaf in self.leaves:
            if leaf.role and leaf.role not in out:
                match = _STACK.match(leaf.name)
                out[leaf.role] = match.group("rest") if match else leaf.name
        return out


def _is_adapter_leaf(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return type(module).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D (GPT-2)


def _role_of(rest: str) -> str | None:
    for role, pattern in _ROLE_RULES:
        if pattern.search(rest):
            return role
    return None


def scan(model: nn.Module) -> ModelStructure:
    """Find the adapter-capable leaves, their layer indices and roles."""
    leaves: list[Leaf] = []
    stacks: dict[str, int] = {}
    for name, module in model.named_modules():
        if not name or not _is_adapter_leaf(module):
            continue
        match = _STACK.match(name)
        if match is None:
            leaves.append(Leaf(name=name, role=None, layer=None, stack=None))
            continue
        stack, index = match.group("stack"), int(match.group("index"))
        stacks[stack] = max(stacks.get(stack, 0), index + 1)
        leaves.append(Leaf(name=name, role=_role_of(match.group("rest")), layer=index, stack=stack))
    num_layers = max(stacks.values(), default=0)
    return ModelStructure(leaves=leaves, num_layers=num_layers, stacks=stacks)


def parse_roles(value: Any) -> list[str]:
    """Roles from a list or a comma-joined string (as stored in Optuna)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    roles = [str(item).strip() for item in items if str(item).strip()]
    known = set(ROLES) | set(ROLE_GROUPS) | {ALL_LINEAR}
    unknown = [r for r in roles if r not in known]
    if unknown:
        raise SpaceError(
            f"space.placement.roles: unknown role {unknown[0]!r} "
            f"(expected some of: {', '.join(sorted(known))})"
        )
    if not roles:
        raise SpaceError("space.placement.roles: expected at least one role, found none")
    return roles


def parse_layers(value: Any, num_layers: int) -> list[int]:
    """Layer indices from a selector: all, first-K, last-K, every-K, A..B, or a list."""
    field_name = "space.placement.layers"
    if isinstance(value, (list, tuple)):
        indices = [int(v) for v in value]
    elif isinstance(value, int) and not isinstance(value, bool):
        indices = [value]
    elif isinstance(value, str):
        text = value.strip()
        kind, _, arg = text.partition("-")
        if text == "all":
            return list(range(num_layers))
        if kind in {"first", "last", "every"} and arg.isdigit() and int(arg) > 0:
            k = int(arg)
            if k > num_layers and kind != "every":
                raise SpaceError(f"{field_name}: {text!r} asks for {k} layers, the model has {num_layers}")
            if kind == "first":
                return list(range(k))
            if kind == "last":
                return list(range(num_layers - k, num_layers))
            return list(range(0, num_layers, k))
        if ".." in text:
            start, _, end = text.partition("..")
            if not (start.strip().isdigit() and end.strip().isdigit()) or int(end) < int(start):
                raise SpaceError(f"{field_name}: expected a block A..B with A <= B, found {text!r}")
            indices = list(range(int(start), int(end) + 1))
        elif re.fullmatch(r"\d+(,\d+)*", text):
            indices = [int(v) for v in text.split(",")]
        else:
            raise SpaceError(
                f"{field_name}: expected all, first-K, last-K, every-K, A..B or a list of "
                f"indices, found {text!r}"
            )
    else:
        raise SpaceError(f"{field_name}: expected a layer selector, found {value!r}")
    bad = [i for i in indices if i < 0 or i >= num_layers]
    if bad:
        raise SpaceError(f"{field_name}: layer {bad[0]} is beyond the model's depth ({num_layers} layers: 0..{num_layers - 1})")
    return sorted(set(indices))


def _expand(roles: Iterable[str]) -> tuple[set[str], bool]:
    wanted: set[str] = set()
    all_linear = False
    for role in roles:
        if role == ALL_LINEAR:
            all_linear = True
        wanted.update(ROLE_GROUPS.get(role, (role,)))
    return wanted, all_linear


def resolve(structure: ModelStructure, layers: Any, roles: Any) -> list[str]:
    """The exact module names that get an adapter; SpaceError when the placement matches none."""
    role_list = parse_roles(roles)
    indices = set(parse_layers(layers, structure.num_layers))
    wanted, all_linear = _expand(role_list)
    names = [
        leaf.name
        for leaf in structure.leaves
        if leaf.layer is not None
        and leaf.layer in indices
        and (all_linear or leaf.role in wanted)
    ]
    if not names:
        examples = structure.role_examples()
        have = ", ".join(f"{r} ({examples[r]})" for r in structure.roles) or "none"
        raise SpaceError(
            f"space.placement.roles: {','.join(role_list)} matches no module of this model "
            f"(roles it has: {have})"
        )
    return names


def names_regex(names: Sequence[str]) -> str:
    """An anchored regex matching exactly ``names`` (peft full-matches string targets)."""
    return "(?:" + "|".join(re.escape(n) for n in names) + ")"


def role_of_names(structure: ModelStructure, names: Iterable[str], roles: Iterable[str]) -> list[str]:
    """The subset of ``names`` whose role is among ``roles`` (e.g. the MLP ones for IA3)."""
    by_name = {leaf.name: leaf.role for leaf in structure.leaves}
    wanted = set(roles)
    return [n for n in names if by_name.get(n) in wanted]
