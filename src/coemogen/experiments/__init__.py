"""Reproductions built from the same stages users run: `demo.py` (the whole method on the
synthetic world) and `paper_table.py` (every method and ablation of the paper's table), both on
the shared stage runner in `stages.py`."""
