"""The frozen teacher that scores the student's tokens: its final hidden states and its LM
head, whole on every rank or sharded over the ranks.

``replicated``: every rank holds the whole teacher (a 14B teacher is 27.5 GiB of each GPU).
``zero3``: DeepSpeed ZeRO-3 without an optimizer, as TRL prepares reference and teacher
models: each rank keeps 1/world of the weights, and each layer is gathered for its forward
and released after it. The chunked OPD loss reads the head's weight outside any forward,
so the head is gathered once for a micro-batch's loss (:meth:`Teacher.head`) and released.

Every gather is a collective: with ``zero3`` every rank must run as many forwards as the
others, which the updater's micro-batches guarantee (:meth:`opd.train.updater.Updater.micro_batches`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..distributed import Dist, export_single_process_env
from ..models import hidden_and_head

SHARDINGS = ("replicated", "zero3")


def zero3_inference_config(hidden: int, dtype: torch.dtype) -> dict:
    """ZeRO-3 for a frozen model: accelerate's "auto" sizes for the hidden size (what TRL
    passes for its reference models): layers gathered in buckets of ~0.9 hidden^2, parameters
    under 10 hidden elements (norms, biases) kept whole on every rank."""
    return {
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 10 * hidden,
                              "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden)},
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "train_micro_batch_size_per_gpu": 1,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


class _Trunk(torch.nn.Module):
    """The teacher's decoder trunk as the root module DeepSpeed wraps: its forward is the
    one that opens and closes ZeRO-3's gather schedule (the head's weight stays inside, as
    a parameter of the wrapped model, and is gathered on its own)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, **kwargs):
        return self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                                     **kwargs).last_hidden_state


class Teacher:
    def __init__(self, model, sharding: str = "replicated", dist: Dist = Dist()):
        if sharding not in SHARDINGS:
            raise ValueError(f"teacher_sharding {sharding!r} is not one of {SHARDINGS}")
        model.requires_grad_(False).eval()
        _, head = hidden_and_head(model)  # refuses heads with a bias or soft-capping
        self.sharding = sharding
        self._head = head
        self._trunk = _Trunk(model)
        if sharding == "zero3":
            import deepspeed

            if dist.world == 1:
                export_single_process_env()
            self.engine, *_ = deepspeed.initialize(
                model=self._trunk, config=zero3_inference_config(model.config.get_text_config().hidden_size,
                                                                 head.dtype))
            self.engine.eval()
        else:
            self.engine = None

    @property
    def sharded(self) -> bool:
        """Whether a forward is a collective (every rank must run as many as the others)."""
        return self.engine is not None

    @torch.no_grad()
    def hidden(self, input_ids: torch.Tensor, attention_mask, **kwargs) -> torch.Tensor:
        """Final hidden states; ``kwargs`` as the model's forward takes them (a packed row's)."""
        forward = self._trunk if self.engine is None else self.engine
        return forward(input_ids, attention_mask, **kwargs)

    @contextmanager
    def head(self):
        """The LM head's whole weight, for as long as the loss needs it."""
        if self.engine is None:
            yield self._head
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters([self._head], modifier_rank=None):
            yield self._head
