"""The config: typed specs (every default, once), study resolution and validation."""
