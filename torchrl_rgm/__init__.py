"""torchrl_rgm: offline policy learning when rewards are wrong (RGM, Li et al., ICLR 2023)."""
__version__ = "0.1.0"
