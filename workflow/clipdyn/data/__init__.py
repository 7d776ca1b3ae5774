"""Data stage: dataset format adapters, manifests, image decoding, pixel caches, corruptions."""
