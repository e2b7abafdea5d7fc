"""Stage 2: loading models (embedded GGUF, Hugging Face ids, local dirs), LoRA adapters, layer access, forward/NLL helpers and generation."""
