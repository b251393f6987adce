"""The toy world: a synthetic math task small enough to run the whole study on a CPU."""
