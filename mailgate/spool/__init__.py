"""The durable disk queue between the doors and the pipeline."""
