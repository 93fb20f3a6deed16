"""Running a model on an image: tiled, exact, on any device and precision."""
