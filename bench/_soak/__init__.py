"""Helpers of the soak-and-chaos harness (``bench/soak.py``); ``counting`` is shared with ``bench/end_to_end.py``."""
