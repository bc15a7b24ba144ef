"""What running a model needs, for serving and training alike: base models, the device, threads, the OpenAI client."""
