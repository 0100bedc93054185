"""The public Python API, re-exported from the modules that do the work (nothing in the
package imports this module):

- `score` (scoring.py): every record scored or rejected; the score table.
- `select` (selection.py): rows of a score table chosen by a strategy.
- `run` (pipeline.py): score, select and write a run folder.
- `evaluate`, `rule_experiments` (train/api.py): fine-tune on subsets and compare held-out loss.
"""
from .io import read_dataset, scan_dataset
from .manifest import library_versions
from .pipeline import run
from .scoring import ScoreResult, build_manifest, build_scorers, rejects_path, score
from .selection import Selection, select, selection_manifest, with_selection
from .train.api import evaluate, rule_experiments

__all__ = ["ScoreResult", "Selection", "build_manifest", "build_scorers", "evaluate", "library_versions",
           "read_dataset", "rejects_path", "rule_experiments", "run", "scan_dataset", "score", "select",
           "selection_manifest", "with_selection"]
