"""Stage 3: fine-tuning (torch-free config, trainer, checkpoints, the training run); defenses plug in through emguard.defenses."""
