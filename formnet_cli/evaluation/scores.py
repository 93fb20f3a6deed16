"""A checkpoint's card scores, recorded from what ``formnet eval`` measured (no hand edits).

The ``scores`` of a checkpoint's ``config.json`` map ``"<data set> <setting>"`` (``"BSD68 sigma
25"``, ``"Classic5 q 10"``, ``"Set5 x2"``) to a mean PSNR in dB, rounded to 0.01 dB; ``formnet
models`` shows them. :func:`record_scores` writes those an evaluation measured for a checkpoint,
during the evaluation (``formnet eval ... --record-scores MODEL_FOLDER``) or from its saved
report::

    formnet eval BSD68 --sigma 15 25 50 --model runs/x/model --json bsd68.json
    python -c "from formnet_cli.evaluation.scores import record_scores; record_scores('runs/x/model', 'bsd68.json')"
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.hub.checkpoint import read_info, write_info

__all__ = ["record_scores"]


def record_scores(folder: str | os.PathLike[str], report: Mapping[str, Any] | str | os.PathLike[str],
                  *, dataset: str | None = None) -> dict[str, float]:
    """Write the mean PSNRs ``report`` measured for the checkpoint in ``folder`` into its
    ``config.json`` and return them; its other scores are kept, those of the same keys replaced.

    ``report`` is an :meth:`~formnet_cli.evaluation.report.EvalReport.to_dict` or the path of a
    ``formnet eval --json`` file; ``dataset`` names the set in the keys (default: the report's).
    Only results run with the checkpoint's own self-ensemble size count, as the card's scores
    describe what ``ensemble="auto"`` runs. Raises :class:`~formnet_cli.errors.InvalidOptionError`
    when the report measured nothing for the checkpoint that can be recorded.
    """
    where = str(report) if not isinstance(report, Mapping) else "the evaluation"
    data = report if isinstance(report, Mapping) else _read_report(Path(report))
    info = read_info(folder)
    try:
        label = dataset or str(data["dataset"])
        rows = [(row["label"], row["mean_psnr"], row["checkpoint"]["ensemble"])
                for row in data["results"] if row.get("checkpoint")
                and Path(row["checkpoint"]["path"]).resolve() == Path(folder).resolve()]
    except KeyError as error:
        raise FormnetError(f"{where}: not a 'formnet eval --json' report (no {error} field)") from None
    except (TypeError, AttributeError):
        raise FormnetError(f"{where}: not a 'formnet eval --json' report") from None
    if not rows:
        raise InvalidOptionError(f"{where} has no results for the checkpoint in {folder}; "
                                 f"evaluate it with --model {folder}")
    own = [(setting, psnr) for setting, psnr, passes in rows if passes == info.ensemble]
    if not own:
        measured = sorted({passes for _, _, passes in rows})
        raise InvalidOptionError(
            f"{where} measured {folder} with {' and '.join(map(str, measured))} self-ensemble "
            f"pass(es), its card runs {info.ensemble}; evaluate it with --ensemble auto")
    scores = {f"{label} {setting}": round(float(psnr), 2) for setting, psnr in own
              if isinstance(psnr, (int, float)) and math.isfinite(psnr)}
    if not scores:
        raise InvalidOptionError(f"{where} has no finite PSNR for {folder} to record "
                                 "(levels outside the model's range, or identical images)")
    write_info(folder, dataclasses.replace(info, scores={**info.scores, **scores}))
    return scores


def _read_report(path: Path) -> Mapping[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FormnetError(f"{path}: cannot read ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormnetError(f"{path}: not a 'formnet eval --json' report ({error})") from None
