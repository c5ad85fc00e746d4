"""The image pipeline: sources, destinations and the one copy between them (see :mod:`.base`)."""
