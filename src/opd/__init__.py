"""On-policy distillation (OPD) study workflow library.

The Snakemake rules call thin scripts in ``scripts/``; everything they do lives here.
"""

__version__ = "0.1.0"
