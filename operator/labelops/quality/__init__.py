"""Pure statistics of data quality and models in the loop (issues 10 and 11).

No I/O and no imports from the store, worker, operator or clients: the store, the worker, the
operator's status, the export and the learner call these functions with plain numbers and get
frozen dataclasses back, so every decision about labels (a threshold, a block, a stop, a
consolidated value) is made in one place, by a named method, tested against known values.

Modules:
- `intervals`: Wilson score and Clopper-Pearson intervals of a binomial proportion.
- `calibration`: the auto-accept threshold (fixed-sequence Clopper-Pearson) and the drift brake.
- `sampling`: reproducible audit and gold sampling from a keyed hash (also computable in SQL).
- `gold`: the verdict on a labeler from their gold answers (Wilson upper bound).
- `posterior`: labeler accuracy, the one-coin posterior and the adaptive-overlap stopping rule.
- `agreement`: Krippendorff's alpha (nominal, ordinal).
- `consolidation`: majority, weighted (one-coin posterior) and Dawid-Skene / GLAD / MACE.
- `values`: the fixed order of label values that breaks every tie the same way.
"""
