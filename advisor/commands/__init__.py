"""One module per command: arguments parsed here, work done by the pipeline modules."""
