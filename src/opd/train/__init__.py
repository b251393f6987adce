"""Training recipes (one readable file each) and the checkpointing they share."""
