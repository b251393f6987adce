"""What a local model directory (a ``path:`` model) must hold, checked while the DAG is built.

Without ``config.json`` transformers guesses the architecture and says the directory
"should have a model_type"; without tokenizer files it loads an empty tokenizer and the
job fails later on a reshape. Both are the user's directory missing a file, and are said
so before any job runs. Only the file system is read here (the DAG is built without
transformers).
"""

from __future__ import annotations

from pathlib import Path

# the vocabulary files of transformers' tokenizers: fast (tokenizer.json), byte-level BPE
# (vocab.json + merges.txt), WordPiece (vocab.txt), SentencePiece, tiktoken
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "tiktoken.model")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def model_dir_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a loadable model directory, or None."""
    root = Path(path)
    if not root.exists():
        return f"{path} does not exist"
    if not root.is_dir():
        return f"{path} is a file, not a model directory (config.json, weights and tokenizer files)"
    if not (root / "config.json").is_file():
        return f"{path} has no config.json (the model's architecture and sizes)"
    if not any((root / name).is_file() for name in TOKENIZER_FILES) and not any(root.glob("*.tiktoken")):
        return f"{path} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)})"
    if not any(next(root.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        return f"{path} has no weights ({' or '.join(WEIGHT_PATTERNS)})"
    return None


def local_model_errors(config: dict) -> list[str]:
    """One line per ``path:`` model of a validated config whose directory is not loadable."""
    return [f"config.models.{name}.path: {problem}" for name, entry in config["models"].items()
            if "path" in entry and (problem := model_dir_problem(entry["path"]))]
