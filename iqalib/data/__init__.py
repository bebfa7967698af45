"""Data sets, images and patches: table -> decoded images -> patches."""
