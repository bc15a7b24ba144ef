"""Fine-tuning jobs run by our own server: uploaded files and jobs in its database, the worker that trains them."""
