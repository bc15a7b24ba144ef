"""Fine-tuning: hyperparameter defaults, the one local LoRA trainer, train → register, and jobs on a hosted server."""
