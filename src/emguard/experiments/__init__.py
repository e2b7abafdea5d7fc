"""Stage 6: the experiment engine (grids of cells, executors, shared steps), its presets (the demo) and its report."""
