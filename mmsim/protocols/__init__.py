"""Evaluation protocols other than InterFeedback, one package each (scenario ``kind:``).

Each protocol package owns its scenario schema, data, environment/runner, metrics and
report, and reuses the kernel's actors, backends, store and resume-by-episode-id logic.
"""
