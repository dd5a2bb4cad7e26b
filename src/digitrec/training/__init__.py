"""Training models: MNIST files and split, the batched input pipeline, configs and recipes, the loop."""
