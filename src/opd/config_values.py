"""Config values as the user wrote them, not as a YAML 1.1 reader left them.

Two readers leave numbers as strings: Snakemake reads the nested values of ``--config``
with YAML's BaseLoader (``--config 'eval={sampling: {n: 2}}'`` gives ``n: '2'``), and
PyYAML reads ``1e-6`` (no dot) as a string, where YAML 1.2 reads a float. Where the schema
refuses such a string, it is read as YAML 1.2's core schema reads a plain scalar (an int,
a float, true/false, null); anything else stays a string and the schema names it.
"""

from __future__ import annotations

import re

INT = re.compile(r"[-+]?[0-9]+")
FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
CONSTANTS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
             "null": None, "Null": None, "NULL": None, "~": None}


def core_scalar(text: str):
    """What YAML 1.2's core schema reads ``text`` as, unquoted: an int, a float, a bool,
    null, or the string itself."""
    plain = text.strip()
    if plain in CONSTANTS:
        return CONSTANTS[plain]
    if INT.fullmatch(plain):
        return int(plain)
    if FLOAT.fullmatch(plain):
        return float(plain)
    return text


def _set(config, path, value) -> None:
    *parents, leaf = path
    for part in parents:
        config = config[part]
    config[leaf] = value


def read_typed_strings(config: dict, validator) -> None:
    """Replace, in place, each string the schema refuses by its type where YAML 1.2 reads it
    as another type (``'2'`` -> 2 at an integer key, ``'1e-6'`` -> 1e-06 at a number)."""
    while True:
        fixes = [(list(e.absolute_path), value) for e in validator.iter_errors(config)
                 if e.validator == "type" and isinstance(e.instance, str) and e.absolute_path
                 and not isinstance(value := core_scalar(e.instance), str)]
        if not fixes:
            return
        for path, value in fixes:
            _set(config, path, value)
