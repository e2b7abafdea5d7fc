"""Stage 5: evaluation (broad and narrow EM, benign learning, coherence) with statistics and judges."""
