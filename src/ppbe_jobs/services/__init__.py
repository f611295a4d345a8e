"""Domain services: what the job processors adapt (database rows in, artefacts out)."""
