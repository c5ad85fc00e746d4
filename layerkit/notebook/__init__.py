"""The notebook face: DataFrames, plots, widgets, magics and reports built on :mod:`layerkit.commands`."""
