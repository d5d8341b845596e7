"""The pipeline's steps, in the order of ``pipeline.run.STEPS``."""
