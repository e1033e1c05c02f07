"""Distillation objectives, one file each; importing ``all_objectives`` registers them."""
