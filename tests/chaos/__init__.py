"""The chaos suite: faults injected under labeling load, checked against a ledger.

`python bench/run_chaos.py` (make chaos) runs every fault, one at a time and then combined, with
32 labelers, and writes bench/results/chaos.json and chaos.md; test_chaos_short.py is the short
version `make test` runs. See suite.py.
"""
