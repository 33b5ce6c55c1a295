"""Calibration: contrastive fine-tuning of the dense encoder on (caption, description) pairs.

pairs.py   pair sources (store, COCO joins, Karpathy caption proxies, generic JSONL), several at once,
           validation, exclusions, split by image
mining.py  hard negatives: BM25 (a throw-away Lucene index) or any ranking passed in (the CLI's hybrid)
sampler.py batches with one pair per image
distil.py  distillation: a teacher's score margins on (query, document, hard negative) and the loss using them
train.py   the sentence-transformers trainer run → a model folder `load_encoder` accepts
Heavy libraries (torch, sentence-transformers, the JVM) load inside the functions that need them.
"""
