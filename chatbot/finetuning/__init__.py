"""OpenAI's files and fine-tuning API on our own server: uploaded files, jobs, the worker that runs them."""
