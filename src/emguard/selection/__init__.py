"""Stage 4a: Interleaving+/++ selection of general rows by the perplexity gap between aligned and misaligned models."""
