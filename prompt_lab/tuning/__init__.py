"""LoRA tuning: its spec and training loop, and the jobs that run it in a separate process."""
