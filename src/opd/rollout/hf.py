"""Rollouts with ``transformers``' ``generate`` (batched, KV cache)."""

from __future__ import annotations

import torch

from ..batching import pad_pairs, prediction_positions
from ..progress import progress
from . import Rollout, SamplingParams, check_prompt_lengths


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
        device = self.model.device
        greedy = sampling.temperature == 0
        seqs = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=list(self.stop_ids),
            pad_token_id=pad,
        ).cpu()
        rollouts = []
        for row, (i, j) in enumerate(chunk):
            tokens = seqs[row, width:].tolist()
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
