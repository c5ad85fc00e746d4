"""The layer engine: digests, references, the blob store, images, layers, the union view, containers.

Nothing in this package imports pandas, matplotlib, ipywidgets or IPython.
"""
