"""ckptvc: Git-style version control for large ML model checkpoints."""

from __future__ import annotations

__version__ = "0.1.0"

from ckptvc.errors import CkptvcError  # noqa: E402
from ckptvc.repo import Repo  # noqa: E402


def log_checkpoint(path, parent=None, dataset=None, tokenizer=None, config=None, metrics=None, meta=None,
                   seed=None, commit=None, repo=None) -> str:
    """Record a checkpoint a training loop just wrote; returns its version id
    (`ckpt:PATH@BLAKE3[:12]`), the node id `ckptvc lineage` and `show` use.

        vid = ckptvc.log_checkpoint("runs/r7/step-4000.safetensors",
                                    parent="runs/r7/step-2000.safetensors",
                                    dataset="s3://data/train@sha256:...", tokenizer="tok/",
                                    config="train.yaml", metrics={"loss": 1.93},
                                    meta={"lr": 3e-4}, seed=1234)

    `parent` defaults to the previous version at the same path; `metrics` is a dict
    or a JSON file; `meta` is a dict of labels; `commit` (a message, or True) also
    commits the pointers to git. Relative paths are relative to the current
    directory; the repository is the one holding `path` (or `repo`).
    GPU and CUDA facts are recorded when torch is imported.
    """
    import os
    from pathlib import Path

    p = Path(os.fspath(path)).absolute()
    with Repo.open(os.fspath(repo) if repo is not None else p.parent) as r:
        results = r.add([p], parent=os.fspath(parent) if parent is not None else None,
                        dataset=os.fspath(dataset) if dataset is not None else None,
                        tokenizer=os.fspath(tokenizer) if tokenizer is not None else None,
                        config=os.fspath(config) if config is not None else None,
                        metrics=metrics, labels=meta or None, seed=seed)
        if commit:
            r.commit(commit if isinstance(commit, str) else f"checkpoint {results[-1].path}")
    return results[-1].id


__all__ = ["CkptvcError", "Repo", "__version__", "log_checkpoint"]
