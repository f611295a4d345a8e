"""Domain services of the PPBE application: pure calculations over plain typed inputs."""
