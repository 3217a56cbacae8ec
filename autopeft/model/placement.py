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

import inspect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from autopeft.errors import SpaceError

if TYPE_CHECKING:
    from torch import nn

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
    in_features: int = 0
    out_features: int = 0
    #: GPT-2 style ``Conv1D`` (transposed weight) rather than ``nn.Linear``; several peft
    #: methods support only the latter.
    conv1d: bool = False


@dataclass
class ModelStructure:
    """The adapter-capable leaves of a model, its depth, and what families need to know of it."""

    leaves: list[Leaf]
    num_layers: int
    stacks: dict[str, int] = field(default_factory=dict)
    #: ``config.model_type`` (bert, gpt2, llama, ...) and the model class name.
    model_type: str = ""
    architecture: str = ""
    #: Normalisation layers (LayerNorm, RMSNorm, ...) by name, for LN tuning.
    norms: list[str] = field(default_factory=list)
    #: Whether the forward of the model or its backbone takes ``past_key_values`` (prefix tuning).
    takes_past_key_values: bool = False
    #: Whether the model reads token ids (prompt-learning methods prepend virtual tokens).
    takes_input_ids: bool = True
    is_encoder_decoder: bool = False
    #: Width of the token embeddings and attention heads (prompt-learning configs need them;
    #: peft cannot read them from every config, e.g. DistilBERT's ``dim``/``n_heads``).
    hidden_size: int = 0
    num_heads: int = 0

    def conv1d_layers(self) -> bool:
        """Whether the transformer blocks use Conv1D instead of nn.Linear (GPT-2)."""
        return any(leaf.conv1d for leaf in self.leaves if leaf.layer is not None)

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


def _is_adapter_leaf(module: nn.Module, linear: bool) -> bool:
    return linear or type(module).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D (GPT-2)


def _features(module: nn.Module, linear: bool) -> tuple[int, int]:
    if linear:
        layer = cast("nn.Linear", module)
        return layer.in_features, layer.out_features
    weight = getattr(module, "weight", None)  # Conv1D stores (in, out)
    return (int(weight.shape[0]), int(weight.shape[1])) if weight is not None and weight.dim() == 2 else (0, 0)


def _role_of(rest: str) -> str | None:
    for role, pattern in _ROLE_RULES:
        if pattern.search(rest):
            return role
    return None


def _is_norm(module: nn.Module, layer_norm: type) -> bool:
    # LayerNorm, T5LayerNorm, LlamaRMSNorm, GemmaRMSNorm, ...: matched by class name because
    # most architectures define their own norm class.
    cls = type(module).__name__
    return isinstance(module, layer_norm) or cls.endswith(("LayerNorm", "RMSNorm"))


def _forward_parameters(module: nn.Module) -> list[Any]:

    try:
        return list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def _forward_takes(module: nn.Module, argument: str) -> bool:
    return any(p.name == argument for p in _forward_parameters(module))


def _forward_takes_kwargs(module: nn.Module) -> bool:

    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _forward_parameters(module))


def _takes_past_key_values(model: nn.Module) -> bool:
    """Mirror peft's prefix-tuning check so the family is excluded before the search.

    peft's causal-LM model passes ``past_key_values`` to the forward as a keyword without
    checking (transformers 5 decoders take it through ``**kwargs`` and use it as the cache);
    its sequence/token classifiers require the name in the model's or else its backbone's
    (``base_model_prefix``) signature, which transformers 5 renamed to ``cache``.
    """
    if _forward_takes(model, "past_key_values"):
        return True
    if type(model).__name__.endswith("ForCausalLM") or type(model).__name__ == "GPT2LMHeadModel":
        return _forward_takes_kwargs(model)
    from torch import nn

    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return isinstance(backbone, nn.Module) and _forward_takes(backbone, "past_key_values")


def scan(model: nn.Module) -> ModelStructure:
    """Find the adapter-capable leaves, their layer indices and roles."""
    from torch import nn  # deferred: reading a config imports this module, and needs no torch

    leaves: list[Leaf] = []
    stacks: dict[str, int] = {}
    norms: list[str] = []
    for name, module in model.named_modules():
        if name and _is_norm(module, nn.LayerNorm):
            norms.append(name)
        linear = isinstance(module, nn.Linear)
        if not name or not _is_adapter_leaf(module, linear):
            continue
        fin, fout = _features(module, linear)
        match = _STACK.match(name)
        if match is None:
            leaves.append(Leaf(name=name, role=None, layer=None, stack=None, in_features=fin, out_features=fout,
                               conv1d=not linear))
            continue
        stack, index = match.group("stack"), int(match.group("index"))
        stacks[stack] = max(stacks.get(stack, 0), index + 1)
        leaves.append(Leaf(name=name, role=_role_of(match.group("rest")), layer=index, stack=stack,
                           in_features=fin, out_features=fout, conv1d=not linear))
    num_layers = max(stacks.values(), default=0)
    config = getattr(model, "config", None)
    return ModelStructure(
        leaves=leaves, num_layers=num_layers, stacks=stacks,
        model_type=str(getattr(config, "model_type", "") or ""),
        architecture=type(model).__name__,
        norms=norms,
        takes_past_key_values=_takes_past_key_values(model),
        takes_input_ids=_forward_takes(model, "input_ids"),
        is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        hidden_size=int(_first_attr(config, "hidden_size", "d_model", "n_embd", "dim")),
        num_heads=int(_first_attr(config, "num_attention_heads", "num_heads", "n_head", "n_heads")),
    )


def _first_attr(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 0


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


def leaves_named(structure: ModelStructure, names: Iterable[str]) -> list[Leaf]:
    """The leaves of ``names``, in the given order."""
    by_name = {leaf.name: leaf for leaf in structure.leaves}
    return [by_name[n] for n in names if n in by_name]


#: Named per-layer rank patterns: the rank factor of each depth group (first to last third).
RANK_PATTERNS: dict[str, tuple[float, ...]] = {
    "uniform": (1.0,),
    "increasing": (0.5, 1.0, 2.0),
    "decreasing": (2.0, 1.0, 0.5),
    "middle": (0.5, 2.0, 0.5),
}


def parse_rank_pattern(value: Any, field_name: str = "rank_pattern") -> tuple[str, tuple[float, ...]]:
    """A named pattern (uniform, increasing, decreasing, middle) or explicit ranks per layer
    group ("4,8,16": the depth is cut into as many equal groups, each with its own rank)."""
    if value is None or value == "":
        return "uniform", (1.0,)
    text = str(value).strip()
    if text in RANK_PATTERNS:
        return text, RANK_PATTERNS[text]
    if re.fullmatch(r"\d+(,\d+)*", text) and all(int(v) > 0 for v in text.split(",")):
        return "explicit", tuple(float(v) for v in text.split(","))
    raise SpaceError(
        f"{field_name}: expected one of {', '.join(RANK_PATTERNS)} or ranks per layer group like '4,8,16', "
        f"found {value!r}"
    )


def rank_pattern(structure: ModelStructure, names: Sequence[str], r: int, pattern: Any,
                 field_name: str = "rank_pattern") -> dict[str, int]:
    """peft's ``rank_pattern`` (module-name regex → rank) for a per-layer rank pattern.

    The model's depth is cut into equal groups; a named pattern scales ``r`` per group (e.g.
    increasing: r/2, r, 2r from the first to the last third), explicit ranks give each group
    its own rank. Only modules whose rank differs from ``r`` are listed (peft uses ``r`` for
    the rest). Keys are the escaped full module names, which peft matches as ``(.*\.)?key$``.
    """
    kind, values = parse_rank_pattern(pattern, field_name)
    if len(values) == 1 and kind != "explicit":
        return {}
    depth = max(structure.num_layers, 1)
    out: dict[str, int] = {}
    for leaf in leaves_named(structure, names):
        if leaf.layer is None:
            continue
        # by the layer's centre, so a shallow model still spans the first and last group
        group = min(len(values) - 1, int((leaf.layer + 0.5) * len(values) / depth))
        rank = int(values[group]) if kind == "explicit" else max(1, int(round(r * values[group])))
        if rank != r:
            out[re.escape(leaf.name)] = rank
    return out


MASK = "mask"


def mask_layers(bits: Sequence[Any]) -> list[int]:
    """Layer indices switched on in an AutoPEFT-style per-layer mask (one bit per layer)."""
    return [i for i, bit in enumerate(bits) if bit in (True, 1, "1", "true", "True")]
