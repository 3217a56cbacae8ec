"""What the prompt-learning families (prompt, P-, prefix tuning) share."""

from __future__ import annotations

from typing import Any

from autopeft.model.placement import ModelStructure


def needs_tokens(structure: ModelStructure) -> str | None:
    """Prompt learning prepends virtual token embeddings: the model must read token ids."""
    if not structure.takes_input_ids:
        return f"{structure.architecture} reads no token ids, so there is nothing to prepend virtual tokens to"
    if structure.is_encoder_decoder and structure.architecture.endswith("ForSequenceClassification"):
        # peft hands the virtual tokens over as inputs_embeds, which transformers refuses here
        return f"{structure.architecture} does not accept input embeddings, which peft's prompt learning passes"
    return None


def dims(structure: ModelStructure) -> dict[str, Any]:
    """The model sizes prompt-learning configs need, where the scan found them."""
    out = {"token_dim": structure.hidden_size, "num_attention_heads": structure.num_heads,
           "num_layers": structure.num_layers}
    return {k: v for k, v in out.items() if v}
