"""laserctl benchmarks: `make bench` (python -m bench). Every figure comes with a baseline
measured in the same run, and is reported as a ratio to it; tests never assert times."""
