"""!function helpers of the task YAMLs beside this file (written by tests/make_eval_goldens.py)."""


def gsm8k_fewshot_docs(dataset):
    """gsm8k's few-shot pool: the last 5 lines of test.jsonl in file order (disjoint from the scored
    first lines); sampler first_n then takes all 5."""
    return dataset.select(range(len(dataset) - 5, len(dataset)))


def contains(references, predictions):
    """1.0 when the gold answer occurs in the generated text, case-insensitively (kv_pairs retrieval)."""
    return float(references[0].lower() in predictions[0].lower())
