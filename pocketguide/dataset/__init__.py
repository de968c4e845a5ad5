"""Helpers behind the dataset operations (qa, split, sft, eval_suite): content text, MinHash
clustering, union-find and stratified assignment, canonical SFT targets."""
