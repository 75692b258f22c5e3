"""The learning loop: datasets from approved answers, fine-tuning, the evaluation gate."""
