"""Stage 4b: persona vectors (extraction, layer choice, the shipped vectors) and the training-time persona monitor."""
