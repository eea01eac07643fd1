"""Tools around the pipeline: the seeded traffic simulator, the independent oracle that
computes its exact expected results, and the demo."""
