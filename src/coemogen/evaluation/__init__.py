"""Evaluation: FID, LPIPS, Emo-A, Sem-C, Sem-D as in the paper's table.

- `metrics.py`: the metric objects (`update` / `compute` / `reset`, running state);
- `networks.py`: the networks behind them (Inception, LPIPS-alex, torchvision classifiers, CLIP);
- `emotion_head.py`: the Emo-A judge for real data (a linear head on CLIP features) and its training;
- `evaluate.py`: `coemogen evaluate` (which network serves each metric, per emotion and overall);
- `report.py`: metrics.json, metrics.md and report.html from the report data.
"""
