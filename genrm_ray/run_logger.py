"""Per-step metrics of a run: metrics.jsonl (appended, so a resumed run continues it), wandb (offline
unless configured) and a tqdm bar. Used by the Ray Train loop (rank 0) and the GRPO driver."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

# A bar on a stream that is not a terminal (a Ray worker's output, which Ray forwards to the driver
# one line per read, or a log file) redraws at most this often: each redraw is a new line there.
NON_TTY_REFRESH_S = 15.0


class RunLogger:
    def __init__(self, run_dir: str | Path, config: dict[str, Any], total_steps: int, start: int = 0, *,
                 desc: str = "train", postfix: Sequence[str] = ("loss",), wandb_project: str | None = None,
                 wandb_entity: str | None = None, wandb_mode: str | None = None, progress_bar: bool = True,
                 console: TextIO | None = None):
        """``console``: the stream for the bar and notes (default: tqdm's, sys.stderr); a Ray Train
        worker passes its real console, its sys.stderr being the worker log."""
        import wandb
        from tqdm import tqdm

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.file = (run_dir / "metrics.jsonl").open("a")
        self.wandb = wandb.init(
            project=wandb_project or os.environ.get("WANDB_PROJECT", "genrm-ray"),
            entity=wandb_entity or os.environ.get("WANDB_ENTITY"),
            mode=wandb_mode or os.environ.get("WANDB_MODE", "offline"),
            dir=str(run_dir),
            name=run_dir.name,
            config=config,
        )
        self.postfix = tuple(postfix)
        self.console = console
        stream = console or sys.stderr  # tqdm's default
        refresh = 0.1 if getattr(stream, "isatty", lambda: False)() else NON_TTY_REFRESH_S
        self.bar = tqdm(total=total_steps, initial=start, desc=desc, disable=not progress_bar, file=console,
                        mininterval=refresh)

    def log(self, metrics: dict[str, Any]) -> None:
        """One step's metrics; must hold "step"."""
        self.file.write(json.dumps(metrics) + "\n")
        self.file.flush()
        self.wandb.log(metrics, step=metrics["step"])
        shown = {k: metrics[k] for k in self.postfix if k in metrics}
        # refresh=False: update() below redraws, at most every mininterval
        self.bar.set_postfix({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in shown.items()}, refresh=False)
        self.bar.update(1)

    def note(self, text: str) -> None:
        """A console line that does not break the progress bar."""
        self.bar.write(text, file=self.console)

    def close(self) -> None:
        self.bar.close()
        self.wandb.finish()
        self.file.close()
