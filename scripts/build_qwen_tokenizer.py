#!/usr/bin/env python
"""Build a real Qwen tokenizer offline (opd.qwen_tokenizers): Qwen's 151,643-token BPE from
qwen-agent's qwen.tiktoken, with the special tokens and chat template of a flavour (qwen3:
Qwen3's 151,669 tokens; r1_distill: DeepSeek-R1-Distill-Qwen's 151,665)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.io import atomic_dir  # noqa: E402
from opd.qwen_tokenizers import FLAVOURS, build_qwen_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flavour", required=True, choices=sorted(FLAVOURS))
    ap.add_argument("--vocab-file", help="a qwen.tiktoken file (default: the one qwen-agent ships)")
    ap.add_argument("--out", required=True, help="output directory (tokenizer.json, tokenizer_config.json)")
    args = ap.parse_args()
    tok = build_qwen_tokenizer(args.flavour, args.vocab_file)
    with atomic_dir(args.out) as tmp:
        tok.save_pretrained(str(tmp))
    print(f"wrote {args.out}: {len(tok)} tokens, eos {tok.eos_token!r}")


if __name__ == "__main__":
    main()
