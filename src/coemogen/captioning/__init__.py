"""Sentence-level captions from a multimodal LLM, and the CLIP filter.

- `captioners.py`: the captioner interface and the real back-ends (`attributes`, `hf:`, `openai:`);
  the synthetic world's oracle lives in `coemogen/world/oracle.py`;
- `runner.py`: the resumable, shardable captioning run (JSONL, torn-line safe) and shard merging;
- `filtering.py`: CLIP image-text scores and the bottom-share-per-emotion cut -> training manifest.
"""
