"""Training side of fer_engine (torch, transformers): data, models, fer-train, fer-eval."""
