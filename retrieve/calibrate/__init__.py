"""Calibration: contrastive fine-tuning of the dense encoder on (caption, description) pairs.

pairs.py   pair sources (store, COCO joins, generic JSONL), validation, split by image
mining.py  BM25 hard negatives (a throw-away Lucene index)
sampler.py batches with one pair per image
train.py   the sentence-transformers trainer run → a model folder `load_encoder` accepts
Heavy libraries (torch, sentence-transformers, the JVM) load inside the functions that need them.
"""
