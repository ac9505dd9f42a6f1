"""The training flow's publish task carries every uncached DVC output to git."""

from __future__ import annotations

import re

import yaml

from flows.publish import uncached_outputs
from tests.conftest import ROOT, default_params


def test_publish_carries_every_output_dvc_yaml_leaves_uncached():
    paths = default_params().paths
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    declared = set()
    for stage in pipeline["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                if isinstance(entry, dict):
                    [(path, options)] = entry.items()
                    if options.get("cache") is False:
                        declared.add(path)
    resolved = {
        re.sub(r"\$\{paths\.(\w+)\}", lambda m: getattr(paths, m.group(1)), p) for p in declared
    }
    assert resolved == set(uncached_outputs(paths))
