#!/usr/bin/env python
"""Check a study's config files as the workflow does when it starts, without Snakemake:
YAML that does not parse (file, line and column: Snakemake's own reader of --configfile
says only "not valid JSON or YAML"), keys given twice, two files that each define a study,
then the files merged as Snakemake merges them and checked against the schema."""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402
from snakemake.utils import update_config  # noqa: E402

from opd.config import ConfigError, check_config_files, load_schema, validate_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("configfiles", nargs="+", type=Path, help="the --configfile arguments, in their order")
    args = ap.parse_args()
    try:
        check_config_files(args.configfiles)
        config = {}
        for path in args.configfiles:
            update_config(config, yaml.safe_load(path.read_text()) or {})
        validate_config(config, load_schema(ROOT / "workflow/schemas/config.schema.yaml"))
    except ConfigError as e:
        sys.exit(f"invalid config: {e}")
    print(f"{' '.join(map(str, args.configfiles))}: valid ({len(config['experiments'])} experiments with their "
          "sweep points and seeds)")


if __name__ == "__main__":
    main()
