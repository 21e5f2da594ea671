r"""stair-pyg: STAIR multimodal recommendation as PyTorch Geometric building blocks."""
__version__ = "0.1.0"
