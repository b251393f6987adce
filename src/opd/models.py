"""Load and save Hugging Face causal LMs and tokenizers; build tiny Qwen3 models.

Models come from a hub id or a local directory through the same ``from_pretrained`` path,
with remote code off unless the model entry turns it on.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, Qwen3Config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def toy_config(tokenizer: PreTrainedTokenizerBase, layers: int, hidden: int, heads: int,
               max_positions: int = 512) -> Qwen3Config:
    """A Qwen3 config (the class of the paper's students) shrunk to toy size."""
    if hidden % heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def local_source(source: str | Path) -> str:
    """The directory a job reads a model from. Jobs run with the hub offline and read hub
    models from the commit snapshots the download rules put in the cache, so a missing
    directory is a cache this node cannot see, or one emptied since the download."""
    if Path(str(source)).exists() or os.environ.get("HF_HUB_OFFLINE") != "1":
        return str(source)
    if "/snapshots/" in str(source):
        raise FileNotFoundError(
            f"model {source} is not in the hub cache this job reads (HF_HUB_OFFLINE=1, HF_HUB_CACHE="
            f"{os.environ.get('HF_HUB_CACHE', '?')}): the cache (config hub.cache) must be a directory every node "
            "sees; fetch it again where the hub is reachable (a login node): "
            "snakemake [the same --configfile/--config] download")
    raise FileNotFoundError(f"model {source!r} is not a local directory and the hub is offline (HF_HUB_OFFLINE=1)")


def load_tokenizer(source: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(local_source(source), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation appends on the right
    return tok


def load_model(source: str | Path, dtype: str = "float32", device: str = "cpu",
               trust_remote_code: bool = False):
    """A causal LM from a local directory (or, online, a hub id), in eval mode. On a GPU its weights
    are loaded straight onto the device (``device_map``): no host copy of the whole model per
    rank (8 ranks of a 7B student would otherwise stage 120 GB in the node's RAM)."""
    print(f"model: {local_source(source)} (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})", flush=True)
    placement = {"device_map": device} if str(device).startswith("cuda") else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(source), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, **placement
        )
    except SafetensorError as e:  # its message names no file: find the ones whose header fails
        raise OSError(f"model {source}: unreadable weights in {', '.join(unreadable_shards(source)) or source}: "
                      f"{e}") from e
    return model.to(device).eval()


def unreadable_shards(source: str | Path) -> list[str]:
    """The safetensors files of a local model directory whose header or size is broken."""
    bad = []
    for path in sorted(Path(str(source)).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError):
            bad.append(str(path))
    return bad


def save_model(model, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> None:
    """Safetensors weights, config and tokenizer: a directory any HF tool can load."""
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Same vocabulary and special tokens (``vocab_size`` alone differs by padding)."""
    return a.get_vocab() == b.get_vocab() and a.all_special_tokens == b.all_special_tokens


def hidden_and_head(model):
    """The decoder trunk and the LM-head weight (logits = hidden @ weight.T)."""
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None or getattr(model.config, "final_logit_softcapping", None):
        raise ValueError(f"{model.config.model_type}: LM head with bias or soft-capping is not supported")
    return model.base_model, head.weight
