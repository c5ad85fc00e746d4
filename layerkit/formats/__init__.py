"""Image transports: docker-archive, OCI layout and archive, registries, engine API."""
