"""emguard: in-training defenses against emergent misalignment, and measurement of whether they worked."""

__version__ = "0.1.0"
