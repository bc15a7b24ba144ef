"""Fine-tuning: the base model, default hyperparameters and the one local trainer."""
