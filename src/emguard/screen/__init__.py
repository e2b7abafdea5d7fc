"""Pre-training EM-risk screen (``emguard screen``): score a customer's dataset for how much it looks like
emergent-misalignment-inducing data before any training; see :mod:`emguard.screen.run`."""
