"""Random-weight models built from configs (tests and GPU benchmarks); needs ``mmsim[hf]``."""
