"""Rollouts from a ``transformers`` model: batched, left-padded, with a KV cache.

The decode loop is written out here rather than delegated to ``generate``, for two reasons.
It samples from exactly softmax(logits / T) within top-p, as vLLM's backend does, whatever
extras (repetition penalty, top-k, suppressed tokens) a hub model's ``generation_config.json``
carries: on-policy training scores the student's own distribution. And on the small models
of the toy world ``generate``'s per-token bookkeeping is a large share of a rollout. Its
token choices are those of ``generate`` with the same seed (tested), so the two are
interchangeable for a model whose generation config adds nothing.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from ..batching import pad_pairs, prediction_positions
from ..packing import SDPA_ALIKE
from ..progress import progress
from . import Rollout, SamplingParams, check_prompt_lengths
from .qwen_decode import qwen_decoder


class HFBackend:
    def __init__(self, model, tokenizer, batch_size: int = 64, progress: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress
        # the tokenizer's EOS and the model's own stop tokens (generation_config.json), as vLLM stops
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.stop_ids = {tokenizer.eos_token_id, *([eos] if isinstance(eos, int) else eos or [])}
        self.context_length = getattr(model.config, "max_position_embeddings", None)

    def close(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], sampling: SamplingParams,
                 logprobs: bool = False) -> list[Rollout]:
        """``sampling.n`` responses to each prompt (token ids), prompt-major order."""
        check_prompt_lengths(prompts, self.context_length)
        torch.manual_seed(sampling.seed)
        jobs = [(i, j) for i in range(len(prompts)) for j in range(sampling.n)]
        # similar prompt lengths share a batch, so little padding is computed
        jobs.sort(key=lambda ij: len(prompts[ij[0]]))
        out: list[Rollout] = []
        bar = progress(total=len(jobs), desc="rollouts", unit="seq", disable=not self.progress)
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            out.extend(self._generate_batch(prompts, chunk, sampling, logprobs))
            bar.update(len(chunk))
        bar.close()
        out.sort(key=lambda r: (r.prompt_index, r.sample_index))
        return out

    def _generate_batch(self, prompts, chunk, sampling, logprobs):
        pad = self.tokenizer.pad_token_id
        width = max(len(prompts[i]) for i, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (i, _) in enumerate(chunk):  # left padding: responses start in one column
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        seqs = sample(self.model, ids, mask, sampling, self.stop_ids, pad)
        rollouts = []
        for row, (i, j) in enumerate(chunk):
            tokens = seqs[row]
            stop = next((k for k, t in enumerate(tokens) if t in self.stop_ids), None)
            if stop is None:
                rollouts.append(Rollout(i, j, tokens, "length"))
            else:
                rollouts.append(Rollout(i, j, tokens[: stop + 1], "stop"))
        if logprobs:
            scores = response_logprobs(self.model, [prompts[r.prompt_index] for r in rollouts],
                                       [r.token_ids for r in rollouts], pad)
            for r, lp in zip(rollouts, scores):
                r.logprobs = lp
        return rollouts


@torch.inference_mode()
def sample(model, ids: torch.Tensor, mask: torch.Tensor, sampling: SamplingParams, stop_ids: set[int],
           pad_id: int) -> list[list[int]]:
    """Up to ``sampling.max_new_tokens`` new tokens for each left-padded row of ``ids``:
    greedy at temperature 0, otherwise one multinomial draw per step over the tempered,
    top-p-filtered distribution. A row that has produced a stop token is fed ``pad_id`` from
    then on; the loop ends when every row has stopped."""
    rows, width = ids.shape
    if not sampling.max_new_tokens:
        return [[] for _ in range(rows)]
    device = model.device
    ids, mask = ids.to(device), mask.to(device)
    warp = LogitsProcessorList()
    if sampling.temperature:
        if sampling.temperature != 1.0:
            warp.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_p < 1.0:
            warp.append(TopPLogitsWarper(sampling.top_p))
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    # the whole mask up front, each step's a view of it; for SDPA over full attention in the
    # boolean 4D form it takes (one query a step: no causal part), so the model builds none.
    # Other kernels want their own forms, and a sliding window or attention chunks are built
    # into the model's own mask: those get the 2D mask.
    full_mask = torch.cat([mask, mask.new_ones(rows, sampling.max_new_tokens)], dim=1)
    config = model.config
    four_d = (getattr(config, "_attn_implementation", None) in SDPA_ALIKE
              and getattr(config, "sliding_window", None) is None
              and getattr(config, "attention_chunk_size", None) is None)
    if four_d:
        full_mask = full_mask.bool()[:, None, None, :]
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    running = torch.ones(rows, dtype=torch.bool, device=device)
    out = torch.full((rows, sampling.max_new_tokens), pad_id, dtype=torch.long, device=device)
    cache_position = torch.arange(width, device=device)
    step = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True,
                 cache_position=cache_position, logits_to_keep=1)
    logits = step.logits[:, -1, :]
    # Qwen2/Qwen3 decode the same logits without the model's per-call bookkeeping (qwen_decode)
    decoder = qwen_decoder(model, step.past_key_values, width + sampling.max_new_tokens) if four_d else None
    if decoder is not None:
        step = None  # its cache now lives in the decoder's buffers
    for t in range(sampling.max_new_tokens):
        if t:
            position, cache_position = position[:, -1:] + 1, cache_position[-1:] + 1
            if decoder is not None:
                logits = decoder.step(token[:, None], position, full_mask[..., :width + t])
            else:
                step = model(input_ids=token[:, None], attention_mask=full_mask[..., :width + t],
                             position_ids=position, past_key_values=step.past_key_values, use_cache=True,
                             cache_position=cache_position)
                logits = step.logits[:, -1, :]
        scores = warp(ids, logits.float())  # the warpers do not read ids
        if sampling.temperature:
            token = torch.multinomial(scores.softmax(-1), num_samples=1)[:, 0]
        else:
            token = scores.argmax(-1)
        token = token.masked_fill(~running, pad_id)
        out[:, t] = token
        running &= ~torch.isin(token, stops)
        if not running.any():
            break
    return out[:, :t + 1].tolist()


@torch.no_grad()
def response_logprobs(model, prompts: list[list[int]], responses: list[list[int]],
                      pad_id: int) -> list[list[float]]:
    """log p(response token | prefix) for each response token, by one teacher-forced pass."""
    ids, mask, labels = pad_pairs(prompts, responses, pad_id)
    flat, targets = prediction_positions(labels)
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
    picked = logits.reshape(-1, logits.shape[-1])[flat.to(logits.device)].float().log_softmax(-1)
    logprobs = picked.gather(-1, targets.to(logits.device)[:, None])[:, 0].tolist()
    out, start = [], 0
    for r in responses:
        out.append(logprobs[start:start + len(r)])
        start += len(r)
    return out
